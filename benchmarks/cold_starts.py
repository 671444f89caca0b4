"""Cold starts through HTTP only, on one isolation tier (no peers, no load runs).

    python benchmarks/cold_starts.py [--isolation linux] [--samples 100] [--rootless]

A `dayfly up` of its own; the function `import json, os` / `return {}`; each sample is a scale
to zero (DELETE of its instances) then one timed POST on a kept-alive connection, back to
back, after 5 untimed ones. Prints p50 / p90 / p99 / max and the instance's own fork and init
split (from the invocation records), and the floor they are held to (issue 18): fork and exec
of `python3 -S -I -c pass`, one before each sample, so both see the same machine. Quicker than
`run.py` for comparing two versions: run them alternately, several times, on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.dayfly import (
    COLD_SOURCE,
    NOBODY,
    UNPRIVILEGED,
    dayfly_command,
    deploy,
    invoke,
    lambda_client,
    scale_to_zero,
)
from harness.floor import describe, spawn_python_ms
from harness.procs import connection, free_port, request, running


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isolation", default="linux")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--rootless", action="store_true", help="run dayfly as nobody")
    args = ap.parse_args()
    n, port = args.samples, free_port()
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        prefix, env = dayfly_command()
        if args.rootless:
            os.chown(tmp, NOBODY, NOBODY)
            prefix = [*UNPRIVILEGED, *prefix]
        argv = [*prefix, "up", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                f"{tmp}/data", "--isolation", args.isolation]
        with running(argv, port, "/healthz", Path(tmp) / "server.log", env=env, cwd=Path(tmp)):
            deploy(lambda_client(port), "cold", COLD_SOURCE)
            samples, floor = [], []
            with connection(port) as conn:
                for i in range(n + 5):
                    scale_to_zero(conn, "cold")
                    if i >= 5:
                        floor.append(spawn_python_ms())
                    t0 = time.perf_counter()
                    invoke(conn, "cold")
                    if i >= 5:
                        samples.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.5)  # records are written off the request path
                reply = request(conn, "GET", f"/dayfly/v1/functions/cold/invocations?limit={n}")
            records = [r for r in json.loads(reply.body)["invocations"] if r.get("cold")][:n]
    s = sorted(samples)
    print(f"{args.isolation}{' rootless' if args.rootless else ''}: n={n} cold start p50 "
          f"{statistics.median(s):.2f} p90 {s[int(0.9 * n)]:.2f} p99 {s[int(0.99 * n)]:.2f} "
          f"max {s[-1]:.2f} ms; fork p50 {statistics.median(r['fork_ms'] for r in records):.2f} "
          f"init p50 {statistics.median(r['init_ms'] for r in records):.2f} ms; "
          f"{describe(floor, samples)}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
