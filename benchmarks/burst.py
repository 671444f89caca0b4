"""A burst from idle: how long until N new isolated instances of F functions all serve, and
what tearing them down costs the machine.

    python benchmarks/burst.py [--instances 1000] [--functions 10] [--isolation linux]

A `dayfly up` of its own; F functions whose handler notes the wall-clock time it was entered
and then holds its instance `--hold` seconds (so every request needs an instance of its own).
Each function is invoked once and scaled to zero (its zygote is up, no instance exists: "from
idle"); then N connections are opened and, at t0, N requests are written at once (N/F per
function). The burst's time is the last handler's entry minus t0 (instances/s = N / that),
read from the replies; every reply must come from a different instance.

Then every instance is stopped (DELETE of each function's instances) and the teardown is
watched until no instance process is left: how long it took, the most processes in
uninterruptible sleep at once (what raises the load average), the load average, unreclaimable
kernel slab before/after, and how late a 10 ms sleep of this process woke at worst (a stall
of the machine shows there). The server log of a failed run is kept (its path is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from harness.dayfly import dayfly_command
from harness.procs import connection, free_port, request, running
from harness.teardown import Watch, instance_procs

HANDLER = """import time


def handler(event, context):
    t = time.time()
    time.sleep(event.get("hold", 0))
    return {"t": t, "id": context.log_stream_name}
"""


def bundle(max_instances: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", HANDLER)
        zf.writestr("dayfly.toml", f"max_instances = {max_instances}\ntimeout = 120\n"
                                   "idle_timeout = 3600\n")
    return buf.getvalue()


async def post(port: int, path: str, body: bytes, go: asyncio.Event) -> tuple[int, bytes]:
    """One request on a connection of its own, opened before `go` and written when it is set."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        await go.wait()
        writer.write(head + body)
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await reader.readexactly(length)
    finally:
        writer.close()


async def burst(port: int, names: list[str], per: int, hold: float) -> tuple[float, list]:
    go = asyncio.Event()
    body = json.dumps({"hold": hold}).encode()
    tasks = [asyncio.ensure_future(post(port, f"/2015-03-31/functions/{name}/invocations",
                                        body, go))
             for name in names for _ in range(per)]
    await asyncio.sleep(1.0)  # every connection open (the server accepts them meanwhile)
    t0 = time.time()
    go.set()
    return t0, await asyncio.gather(*tasks, return_exceptions=True)


def teardown(port: int, server: int, names: list[str], limit_s: float) -> tuple[float, Watch]:
    """Stop every instance; watch until none is left (or `limit_s`)."""
    watch = Watch(server)
    with connection(port, timeout=limit_s) as conn:
        for name in names:
            reply = request(conn, "DELETE", f"/dayfly/v1/functions/{name}/instances")
            assert reply.status == 204, reply
    # each zygote keeps one spare child (a confined process, not an instance) while dayfly runs
    return time.monotonic() - watch.t0, watch.until_gone(limit_s, keep=len(names))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--functions", type=int, default=10)
    ap.add_argument("--isolation", default="linux")
    ap.add_argument("--hold", type=float, default=12.0,
                    help="seconds each handler holds its instance (longer than the burst)")
    ap.add_argument("--teardown-limit", type=float, default=300.0)
    args = ap.parse_args()
    per = args.instances // args.functions
    n = per * args.functions
    names = [f"burst{i}" for i in range(args.functions)]
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bench-burst-")
    ok = False
    try:
        prefix, env = dayfly_command()
        argv = [*prefix, "up", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                f"{tmp}/data", "--isolation", args.isolation, "--queue-timeout", "120",
                "--max-connections-per-client", str(n + 64)]
        with running(argv, port, "/healthz", Path(tmp) / "server.log", env=env,
                     cwd=Path(tmp)) as proc:
            with connection(port, timeout=120) as conn:
                for name in names:
                    reply = request(conn, "POST", f"/dayfly/v1/functions/{name}/deploy",
                                    bundle(per + 8))
                    assert reply.status < 300, reply
                    reply = request(conn, "POST", f"/2015-03-31/functions/{name}/invocations",
                                    b"{}")
                    assert reply.status == 200, reply
                    assert request(conn, "DELETE",
                                   f"/dayfly/v1/functions/{name}/instances").status == 204
            while instance_procs(proc.pid)[0] > len(names):  # the zygotes' spares
                time.sleep(0.1)
            time.sleep(1)
            load0 = os.getloadavg()[0]
            t0, replies = asyncio.run(burst(port, names, per, args.hold))
            bad = [r for r in replies if isinstance(r, BaseException) or r[0] != 200]
            good = [json.loads(r[1]) for r in replies if not isinstance(r, BaseException)
                    and r[0] == 200]
            entered = sorted(r["t"] - t0 for r in good)
            distinct = len({r["id"] for r in good})
            load1 = os.getloadavg()[0]
            asked, down = teardown(port, proc.pid, names, args.teardown_limit)
        last = entered[-1] if entered else float("nan")
        rows = [
            ("isolation tier", args.isolation),
            ("instances asked for", f"{n} ({args.functions} functions x {per})"),
            ("served, distinct instances", f"{len(good)}, {distinct}"),
            ("errors", f"{len(bad)}" + (f" (first: {bad[0]!r})"[:200] if bad else "")),
            ("first / median / last handler entered (s after t0)",
             f"{entered[0]:.3f} / {statistics.median(entered):.3f} / {last:.3f}"
             if entered else "-"),
            ("instances/s (distinct / last entry)", f"{distinct / last:.0f}" if entered else "-"),
            ("load average before / after the burst", f"{load0:.2f} / {load1:.2f}"),
            ("teardown: DELETEs answered after", f"{asked:.2f} s"),
            *down.rows(),
        ]
        print(f"| burst of {n} | value |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
        ok = not bad and distinct == n and not down.left
        return 0 if ok else 1
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log = Path(tmp) / "server.log"
            kept = Path(tempfile.gettempdir()) / f"burst-failed-{os.getpid()}.log"
            if log.exists():
                shutil.copyfile(log, kept)
                print(f"server log kept: {kept}", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
