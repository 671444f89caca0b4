"""Where a warm invoke's time goes, counted so that a busy machine does not move the figures.

    python benchmarks/warm_profile.py instructions [--requests 500] [--isolation linux]
    python benchmarks/warm_profile.py floors [--isolation linux]

`instructions` runs bare uvicorn (the ceiling of `run.py`) and `dayfly up`, one after the other,
each under `valgrind --tool=callgrind` with instrumentation off, sends 200 warm-up requests on
one kept-alive connection, then counts the user-space instructions of the server's process
(every thread) over `--requests` more: a no-op ASGI app for uvicorn, a warm invoke of a no-op
function for dayfly. Counts repeat to a few percent whatever else runs on the machine; the
instances' own work is not in dayfly's count (they are other processes).

`floors` measures, on the event loop's CPU clock, what a warm invoke is built from: a round
trip over a socketpair to a forked echo process (the cheapest hop there is), the sandbox alone
(`SafeSandbox.invoke` on a started instance: no HTTP, no scheduler), and the node's CPU per
request for a DryRun invoke (the whole gateway, no instance) against a real one (`wrk -c8`,
read from /proc/PID/stat, so these two move with the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from harness import procs
from harness.dayfly import NOOP_SOURCE, dayfly_command, deploy, invoke_path, lambda_client
from harness.direct import direct_sandbox
from harness.peers import ASGI_SOURCE, UVICORN_FLAGS
from harness.procs import connection, free_port, request, running
from harness.venvs import ensure_venv

from dayfly.types import InvokeRequest

WARMUP = 200
NOOP = "noop"


def _drive(port: int, path: str, n: int) -> None:
    with connection(port) as conn:
        for _ in range(n):
            reply = request(conn, "POST", path, b"{}")
            if reply.status != 200:
                raise SystemExit(f"POST {path}: {reply.status} {reply.body[:200]!r}")


def _dayfly_up(port: int, work: Path, isolation: str) -> tuple[list[str], dict[str, str]]:
    """`dayfly up` on PORT with its data in WORK, as the interpreter running the CLI module (so
    valgrind, when it runs it, follows the Python process and not a script's shebang)."""
    _, env = dayfly_command()
    return [sys.executable, "-m", "dayfly.cli.main", "up", "--host", "127.0.0.1", "--port",
            str(port), "--data-dir", str(work / "data"), "--isolation", isolation], env


def _callgrind(argv: list[str], port: int, ready: str, path: str, n: int, work: Path,
               env: dict[str, str] | None, setup=None) -> int:
    """Instructions per request of ARGV's server process, over N requests after the warm-up."""
    out = work / "cg.out"
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]
    with running([*vg, *argv], port, ready, work / "server.log", env=env, cwd=work) as proc:
        if setup is not None:
            setup()
        _drive(port, path, WARMUP)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                       capture_output=True)
        _drive(port, path, n)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True,
                       capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                       capture_output=True)
        total = 0
        for f in work.glob(f"cg.out.{proc.pid}*"):
            for line in f.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    total += int(line.split()[1])
    return total // n


def instructions(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (Debian: apt-get install -y valgrind)")
    procs.READY_TIMEOUT_S = 300.0  # a server starts tens of times slower under callgrind
    uv_bin = ensure_venv("uv", "uvicorn[standard]", "uvicorn")
    with tempfile.TemporaryDirectory(prefix="warm-uv-") as tmp:
        work = Path(tmp)
        (work / "app.py").write_text(ASGI_SOURCE)
        port = free_port()
        argv = [str(uv_bin / "python"), "-m", "uvicorn", "app:app", "--app-dir", str(work),
                *UVICORN_FLAGS, "--host", "127.0.0.1", "--port", str(port)]
        uv = _callgrind(argv, port, "/", "/", args.requests, work, None)
    print(f"uvicorn, bare ASGI app: {uv:,} instructions per request")
    with tempfile.TemporaryDirectory(prefix="warm-dayfly-") as tmp:
        work = Path(tmp)
        port = free_port()
        argv, env = _dayfly_up(port, work, args.isolation)
        node = _callgrind(argv, port, "/healthz", invoke_path(NOOP), args.requests, work, env,
                          setup=lambda: deploy(lambda_client(port), NOOP, NOOP_SOURCE))
    print(f"dayfly node ({args.isolation} tier), warm invoke: {node:,} instructions per "
          f"request, {node / uv:.2f}x uvicorn's")


async def _pingpong(n: int) -> tuple[float, float]:
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echo process
        ours.close()
        while data := theirs.recv(65536):
            theirs.sendall(data)
        os._exit(0)
    theirs.close()
    loop = asyncio.get_running_loop()
    ours.setblocking(False)
    box: list[asyncio.Future] = []
    loop.add_reader(ours.fileno(), lambda: box[0].set_result(ours.recv(65536)))
    c0 = w0 = 0
    for i in range(n + 1000):
        if i == 1000:
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        box[:] = [loop.create_future()]
        ours.send(b"x" * 100)
        await box[0]
    c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
    loop.remove_reader(ours.fileno())
    ours.close()
    os.waitpid(pid, 0)
    return (c1 - c0) / n / 1e3, (w1 - w0) / n / 1e3


async def _sandbox(tier: str, n: int) -> float:
    async with direct_sandbox(tier, NOOP, NOOP_SOURCE) as (sb, spec):
        h = await sb.start(spec, "i1")

        def req(i: int) -> InvokeRequest:
            return InvokeRequest(request_id=f"r{i}", payload=b"{}", invoked_arn="arn")
        for i in range(500):
            await sb.invoke(h, req(i), 5)
        c0 = time.thread_time_ns()
        for i in range(n):
            await sb.invoke(h, req(i), 5)
        cpu = (time.thread_time_ns() - c0) / n / 1e3
        await sb.stop(h)
        return cpu


def _node_cpu(pid: int, url: str, dry: bool, seconds: int = 4) -> tuple[float, int]:
    """(node CPU µs per request, requests) over a `wrk -t1 -c8` run."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text('wrk.method = "POST"\nwrk.body = "{}"\n'
                      + ('wrk.headers["X-Amz-Invocation-Type"] = "DryRun"\n' if dry else ""))
    try:
        def ticks() -> int:
            f = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            return int(f[11]) + int(f[12])
        wrk = ["wrk", "-t1", "-c8", "-s", str(script), url]
        subprocess.run([*wrk[:3], "-d1s", *wrk[3:]], check=True, capture_output=True)
        t0 = ticks()
        out = subprocess.run([*wrk[:3], f"-d{seconds}s", *wrk[3:]], check=True,
                             capture_output=True, text=True).stdout
        used = ticks() - t0
        n = int(next(line.split()[0] for line in out.splitlines() if "requests in" in line))
        return used * 1e6 / os.sysconf("SC_CLK_TCK") / n, n
    finally:
        script.unlink()


def floors(args: argparse.Namespace) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    uvloop.install()
    cpu, wall = asyncio.run(_pingpong(20_000))
    print(f"socketpair round trip to an echo process (uvloop): {cpu:.1f} µs of the loop's CPU, "
          f"{wall:.1f} µs wall")
    print(f"SafeSandbox.invoke alone ({args.isolation} tier): "
          f"{asyncio.run(_sandbox(args.isolation, 5000)):.1f} µs of host CPU per invoke")
    with tempfile.TemporaryDirectory(prefix="warm-floors-") as tmp:
        work = Path(tmp)
        port = free_port()
        argv, env = _dayfly_up(port, work, args.isolation)
        with running(argv, port, "/healthz", work / "server.log", env=env, cwd=work) as proc:
            deploy(lambda_client(port), NOOP, NOOP_SOURCE)
            url = f"http://127.0.0.1:{port}{invoke_path(NOOP)}"
            for dry in (True, False, True, False):
                us, n = _node_cpu(proc.pid, url, dry)
                print(f"node CPU per request, {'DryRun' if dry else 'invoke'}: {us:.0f} µs "
                      f"({n} requests, wrk -c8)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["instructions", "floors"])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--isolation", default="linux")
    args = parser.parse_args()
    (instructions if args.what == "instructions" else floors)(args)


if __name__ == "__main__":
    main()
