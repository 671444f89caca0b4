"""What an HTTP route adds over a raw invoke: p50 of `GET /bench` (a route to `return {}`, its
payload 2.0 event built, its response mapped) over `POST /2015-03-31/functions/NAME/invocations`
of the same function, one node, same run.

    python benchmarks/routes.py [--requests 2000] [--rounds 10] [--isolation process]

Rounds interleave the two paths, each over one kept-alive connection at c=1, so drift on the
machine hits both alike. The one warm instance serves both.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from harness.dayfly import NOOP_SOURCE, dayfly_command, invoke_path, lambda_client
from harness.procs import connection, expect, free_port, request, running

FUNCTION = "bench-route"
TOML = 'handler = "handler.handler"\n[http]\nroutes = ["GET /bench"]\n'


def bundle() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", NOOP_SOURCE)
        zf.writestr("dayfly.toml", TOML)
    return buf.getvalue()


def timed(conn, method: str, path: str, body: bytes | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        expect(request(conn, method, path, body), 200, f"{method} {path}")
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--isolation", default="process")
    args = parser.parse_args()
    prefix, env = dayfly_command()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dayfly-routes-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        argv = [*prefix, "up", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                str(data), "--isolation", args.isolation, "--allow-weak-isolation"]
        with running(argv, port, "/healthz", Path(tmp) / "node.log", env=env, cwd=data):
            lambda_client(port).create_function(
                FunctionName=FUNCTION, Runtime="python3.11", Role="arn:aws:iam::0:role/x",
                Handler="handler.handler", Code={"ZipFile": bundle()})
            samples: dict[str, list[float]] = {"invoke": [], "route": []}
            with connection(port) as inv, connection(port) as rt:
                timed(inv, "POST", invoke_path(FUNCTION), b"{}", 200)
                timed(rt, "GET", "/bench", None, 200)
                for _ in range(args.rounds):
                    samples["invoke"] += timed(inv, "POST", invoke_path(FUNCTION), b"{}",
                                               args.requests)
                    samples["route"] += timed(rt, "GET", "/bench", None, args.requests)
    print(f"{'path':<8} {'n':>6} {'p50 ms':>8} {'p90 ms':>8}")
    for kind, values in samples.items():
        values.sort()
        print(f"{kind:<8} {len(values):>6} {statistics.median(values) * 1000:>8.3f} "
              f"{values[int(len(values) * 0.9)] * 1000:>8.3f}")
    overhead = (statistics.median(samples["route"]) - statistics.median(samples["invoke"])) * 1000
    print(f"route overhead, p50: {overhead:.3f} ms (target <= 0.05 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
