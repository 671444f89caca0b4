"""The peers: Google's functions-framework and a bare uvicorn ASGI app (the ceiling)."""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from pathlib import Path

from harness.measure import LOOPBACK, Row, Settings, measure_load, shown_argv
from harness.procs import check_invoke, free_port, running, tree_pss_mib

FF_SOURCE = 'def hello(request):\n    return "{}"\n'
ASGI_SOURCE = '''\
async def app(scope, receive, send):
    """Answer every HTTP request with 200 and the JSON body {}."""
    more_body = True
    while more_body:
        more_body = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})
'''
# Asks functions-framework which server class it picks and how gunicorn is configured.
FF_PROBE = """
import json, flask, gunicorn
from functions_framework._http import create_server
server = create_server(flask.Flask("probe"), False).server_class
cfg = server(flask.Flask("probe"), "127.0.0.1", 0, False).cfg
print(json.dumps({"server": server.__name__, "gunicorn": gunicorn.__version__,
                  "workers": cfg.workers, "threads": cfg.threads,
                  "worker_class": cfg.worker_class_str, "timeout": cfg.timeout}))
"""
UVICORN_FLAGS = shlex.split(
    "--workers 1 --loop uvloop --http httptools --lifespan off --no-access-log --log-level warning"
)
NO_SCALE_TO_ZERO = "n/a (no scale to zero)"
NO_INSTANCES = "n/a (one long-lived server)"


def ff_server_setup(bin_dir: Path) -> str:
    """Describe the server functions-framework runs by default, as it reports itself."""
    argv = [str(bin_dir / "python"), "-c", FF_PROBE]
    info = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    if info["server"] != "GunicornApplication":
        return f"server class {info['server']}"
    return (
        f"gunicorn {info['gunicorn']}: {info['workers']} worker(s) x {info['threads']} "
        f"thread(s), worker class {info['worker_class']}, timeout {info['timeout']} "
        "(framework defaults: WORKERS=1, THREADS=4 x cpu_count)"
    )


def bench_peer(row: Row, argv: list[str], port: int, settings: Settings, work: Path) -> None:
    """Start a peer server, measure its load behaviour and its memory, then stop it."""
    with running(argv, port, "/", work / "server.log", cwd=work) as proc:
        check_invoke(port, "/")
        measure_load(row, f"http://127.0.0.1:{port}/", settings)
        row.tree_pss = tree_pss_mib(proc.pid)


def bench_functions_framework(row: Row, bin_dir: Path, settings: Settings) -> None:
    """Measure functions-framework serving a no-op HTTP function with its default CLI."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ff-") as tmp:
        work = Path(tmp)
        source = work / "main.py"
        source.write_text(FF_SOURCE)
        ff = str(bin_dir / "functions-framework")
        argv = [ff, "--target", "hello", "--source", str(source), *LOOPBACK, str(port)]
        row.setup = f"`{shown_argv(argv, port, work)}`; {ff_server_setup(bin_dir)}"
        row.cold_note, row.instance_note = NO_SCALE_TO_ZERO, NO_INSTANCES
        bench_peer(row, argv, port, settings, work)


def bench_uvicorn(row: Row, bin_dir: Path, settings: Settings) -> None:
    """Measure a raw ASGI app returning {} under uvicorn (1 worker, uvloop, httptools)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-uvicorn-") as tmp:
        work = Path(tmp)
        (work / "app.py").write_text(ASGI_SOURCE)
        uvicorn = str(bin_dir / "uvicorn")
        argv = [uvicorn, "app:app", "--app-dir", str(work), *UVICORN_FLAGS, *LOOPBACK, str(port)]
        row.setup = f"`{shown_argv(argv, port, work)}`; raw ASGI app, no framework"
        row.cold_note, row.instance_note = NO_SCALE_TO_ZERO, NO_INSTANCES
        bench_peer(row, argv, port, settings, work)
