"""dayfly itself: deploy through the Lambda API, then load, cold-start and memory runs."""

from __future__ import annotations

import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3

from harness.floor import spawn_python_ms
from harness.measure import LOOPBACK, MISSING, REPO_DIR, Row, Settings, measure_load, shown_argv
from harness.procs import (
    check_invoke,
    connection,
    expect,
    free_port,
    process_tree,
    pss_mib,
    request,
    running,
    tree_pss_mib,
)
from harness.wrk import run_wrk

NOOP_FUNCTION = "bench-noop"
COLD_FUNCTION = "bench-cold"
NOOP_SOURCE = "def handler(event, context):\n    return {}\n"
COLD_SOURCE = "import json\nimport os\n\n\ndef handler(event, context):\n    return {}\n"
MEMORY_RUN = (2, 8)  # wrk threads, connections that warm several instances
ACTIVE_TIMEOUT_S = 60.0
IDLE_TIMEOUT_S = 10.0


def dayfly_command() -> tuple[list[str], dict[str, str]]:
    """Return the argv prefix that runs the dayfly CLI, and the environment for it."""
    script = Path(sys.executable).parent / "dayfly"
    if script.exists():
        return [str(script)], dict(os.environ)
    pythonpath = os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get("PYTHONPATH")]))
    return [sys.executable, "-m", "dayfly.cli.main"], {**os.environ, "PYTHONPATH": pythonpath}


def invoke_path(name: str) -> str:
    """Return the HTTP path that invokes function NAME."""
    return f"/2015-03-31/functions/{name}/invocations"


def instances_path(name: str) -> str:
    """Return the HTTP path that lists or stops the instances of function NAME."""
    return f"/dayfly/v1/functions/{name}/instances"


def lambda_client(port: int) -> Any:
    """Return a boto3 Lambda client pointed at the local dayfly."""
    return boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def zip_handler(source: str) -> bytes:
    """Return a zip archive holding SOURCE as handler.py."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("handler.py", source)
    return buffer.getvalue()


def deploy(client: Any, name: str, source: str) -> None:
    """Create function NAME from SOURCE and wait until it is no longer Pending."""
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role="arn:aws:iam::000000000000:role/x",
        Handler="handler.handler",
        Code={"ZipFile": zip_handler(source)},
    )
    deadline = time.monotonic() + ACTIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        state = client.get_function(FunctionName=name)["Configuration"].get("State", "Active")
        if state == "Active":
            return
        if state == "Failed":
            raise RuntimeError(f"function {name} failed to become active")
        time.sleep(0.2)
    raise RuntimeError(f"function {name} still not active after {ACTIVE_TIMEOUT_S:.0f} s")


def list_instances(conn: http.client.HTTPConnection, name: str) -> list[dict[str, Any]]:
    """Return the instances dayfly reports for function NAME."""
    path = instances_path(name)
    return list(json.loads(expect(request(conn, "GET", path), 200, f"GET {path}"))["instances"])


def scale_to_zero(conn: http.client.HTTPConnection, name: str) -> None:
    """Stop every warm instance of function NAME."""
    path = instances_path(name)
    expect(request(conn, "DELETE", path), 204, f"DELETE {path}")


def invoke(conn: http.client.HTTPConnection, name: str) -> None:
    """Invoke function NAME with {}; fail on any status but 200 or on a function error."""
    expect(request(conn, "POST", invoke_path(name), b"{}"), 200, f"invoking {name}")


def time_cold_starts(port: int, name: str, count: int,
                     floor: list[float] | None = None) -> list[float]:
    """Scale NAME to zero, then time one invocation; COUNT times, in milliseconds. With FLOOR,
    one fork+exec of `python3 -S -I -c pass` is timed into it before each sample."""
    samples: list[float] = []
    seen_ids: set[str] = set()
    with connection(port, timeout=60) as conn:
        for _ in range(count):
            scale_to_zero(conn, name)
            if floor is not None:
                floor.append(spawn_python_ms())
            start = time.perf_counter()
            invoke(conn, name)
            samples.append((time.perf_counter() - start) * 1000)
            ids = {str(i["id"]) for i in list_instances(conn, name) if i["id"] is not None}
            if ids & seen_ids:
                raise RuntimeError(f"instance reused after scale to zero: {sorted(ids & seen_ids)}")
            seen_ids |= ids
    return samples


def idle_instances(port: int, name: str) -> list[dict[str, Any]]:
    """Wait until no instance of NAME is busy or starting; return the idle ones."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    with connection(port) as conn:
        while True:
            current = list_instances(conn, name)
            if all(i["state"] == "idle" for i in current) or time.monotonic() > deadline:
                return [i for i in current if i["state"] == "idle"]
            time.sleep(0.2)


def isolation_tiers(port: int, name: str) -> str:
    """Return the isolation tier(s) dayfly reports for the instances of NAME."""
    with connection(port) as conn:
        tiers = {str(i["isolation"]) for i in list_instances(conn, name) if "isolation" in i}
    return ", ".join(sorted(tiers)) or "unknown"


def measure_instance_pss(row: Row, port: int, name: str, seconds: float, server: int) -> None:
    """Warm instances of NAME at concurrency 8; record the mean idle PSS of SERVER's ones."""
    with connection(port) as conn:
        scale_to_zero(conn, name)
    run = run_wrk(f"http://127.0.0.1:{port}{invoke_path(name)}", *MEMORY_RUN, seconds)
    if run.errors or not run.requests:
        with connection(port) as conn:
            states = [i["state"] for i in list_instances(conn, name)]
        raise RuntimeError(f"concurrency-8 run of {name} failed: {run}; instances: {states}")
    idle = idle_instances(port, name)
    if not idle:
        raise RuntimeError(f"no idle instance of {name} after the concurrency-8 run")
    pids = [int(i["pid"]) for i in idle]
    foreign = set(pids) - set(process_tree(server))
    if foreign:
        raise RuntimeError(f"instance PIDs {sorted(foreign)} are not in dayfly's process tree")
    row.instance_pss = (statistics.mean(pss_mib(pid) for pid in pids), len(pids))


# `dayfly up` as nobody, in a private mount namespace where this interpreter is reachable
UNPRIVILEGED = ("unshare", "--mount", "--propagation", "private", sys.executable,
                str(REPO_DIR / "tests" / "security" / "unprivileged.py"))
NOBODY = 65534


def bench_dayfly(row: Row, settings: Settings, isolation: str | None = None,
                 rootless: bool = False) -> None:
    """Start `dayfly up` (on one isolation tier; as root, or as nobody), deploy and measure."""
    port = free_port()
    row.cold_note = row.instance_note = MISSING
    with tempfile.TemporaryDirectory(prefix="bench-dayfly-") as tmp:
        work = Path(tmp)
        prefix, env = dayfly_command()
        if rootless:
            os.chown(work, NOBODY, NOBODY)
            prefix = [*UNPRIVILEGED, *prefix]
        argv = [*prefix, "up", *LOOPBACK, str(port), "--data-dir", str(work / "data")]
        if isolation:
            argv += ["--isolation", isolation]
        row.setup = (
            f"`{shown_argv(argv, port, work)}`; handlers `return {{}}` (load, memory) "
            "and `import json, os` + `return {}` (cold start)"
        )
        with running(argv, port, "/healthz", work / "server.log", env=env, cwd=work) as proc:
            client = lambda_client(port)
            deploy(client, NOOP_FUNCTION, NOOP_SOURCE)
            deploy(client, COLD_FUNCTION, COLD_SOURCE)
            invoke_url = f"http://127.0.0.1:{port}{invoke_path(NOOP_FUNCTION)}"
            check_invoke(port, invoke_path(NOOP_FUNCTION))
            row.setup += f"; isolation tier: {isolation_tiers(port, NOOP_FUNCTION)}"
            measure_load(row, invoke_url, settings)
            row.tree_pss = tree_pss_mib(proc.pid)
            row.floor_ms = []
            row.cold_ms = time_cold_starts(port, COLD_FUNCTION, settings.cold_starts,
                                           row.floor_ms)
            if isolation == "gvisor":  # instances are threads of runsc's sentry, not host pids
                row.instance_note = "n/a (inside the gVisor sentry: see the tree)"
            else:
                measure_instance_pss(row, port, NOOP_FUNCTION, settings.warmup_seconds,
                                     proc.pid)
