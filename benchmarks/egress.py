"""What native egress adds to a PostgreSQL round trip: `SELECT 1` on an open psycopg connection,
from inside a function (through the relay: the door in its namespace, the node's event loop,
the host's connection) against the same query from the host directly, same run.

    python benchmarks/egress.py [--samples 2000] [--rounds 5] [--tiers linux,gvisor]
        [--database postgresql://postgres@127.0.0.1:5432/test]

Starts one `dayfly up` (as root: the linux tier with its own uids; gvisor if runsc works),
deploys a function per tier that declares the database's host:port and has psycopg
(psycopg[binary], vendored into its bundle: tests/e2e/egress_helpers.py), and interleaves
rounds: the host's own connection (`samples` round trips, after a warm-up), then each tier's
function doing the same on its own connection inside one invocation (it times each round trip
itself with perf_counter_ns). Prints p50 / p99 per path and the difference to the direct one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from harness.dayfly import dayfly_command
from harness.measure import LOOPBACK
from harness.procs import free_port, running

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from egress_helpers import deploy, invoke  # the tests' function (psycopg vendored)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def direct(dsn: str, samples: int, warmup: int = 50) -> list[float]:
    """Round trips from the host, on one open connection, in microseconds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(warmup):
            conn.execute("SELECT 1").fetchone()
        out = []
        for _ in range(samples):
            t0 = time.perf_counter_ns()
            conn.execute("SELECT 1").fetchone()
            out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tiers", default="linux,gvisor")
    ap.add_argument("--database", default=os.environ.get(
        "DAYFLY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    info = psycopg.conninfo.conninfo_to_dict(args.database)
    host, port = info.get("host", "127.0.0.1"), int(info.get("port", 5432))
    tiers = [t for t in args.tiers.split(",") if t]
    results: dict[str, list[float]] = {"direct (host)": []}
    print(f"load before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dayfly-bench-egress-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        port_http = free_port()
        prefix, env = dayfly_command()
        argv = [*prefix, "up", *LOOPBACK, str(port_http), "--data-dir", str(data)]
        with running(argv, port_http, "/healthz", Path(tmp) / "server.log", env=env):
            url = f"http://127.0.0.1:{port_http}"
            for tier in tiers:
                out = deploy(url, f"bench-egress-{tier}", f'isolation = "{tier}"\ntimeout = 300\n'
                             f'memory = 256\nnetwork = ["{host}:{port}"]\n')
                if out.get("status") != 200 or "function" not in out:
                    sys.exit(f"deploy on {tier} failed: {out}")
                results[f"function ({tier})"] = []
            for _ in range(args.rounds):
                results["direct (host)"] += direct(args.database, args.samples)
                for tier in tiers:
                    got = invoke(url, f"bench-egress-{tier}",
                                 {"bench": args.database, "samples": args.samples}, timeout=600)
                    results[f"function ({tier})"] += got["samples"]
    print(f"load after: {os.getloadavg()}", flush=True)
    base = statistics.median(results["direct (host)"])
    print(f"\nPostgreSQL SELECT 1 round trip, {args.rounds} x {args.samples} samples per path "
          f"({host}:{port})")
    print(f"{'path':<20} {'p50 us':>9} {'p99 us':>9} {'p50 - direct':>13}")
    for path, samples in results.items():
        p50 = statistics.median(samples)
        print(f"{path:<20} {p50:9.1f} {pct(samples, 0.99):9.1f} {p50 - base:+13.1f}")


if __name__ == "__main__":
    main()
