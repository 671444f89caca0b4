"""What forwarding a sync invoke to another node adds: p50 of an invoke that node B forwards to
node A, over the same invoke sent to A directly, two cluster nodes on loopback, same run.

    python benchmarks/forward.py [--requests 2000] [--rounds 10]
        [--database postgresql://postgres@127.0.0.1:5432/postgres] [--nats nats://127.0.0.1:4222]

Starts two `dayfly up --cluster` nodes (ids `a` and `b`, own data dirs and ports) on a fresh
PostgreSQL database and a unique NATS prefix (both dropped afterwards), deploys `return {}`
with reserved concurrency 1: node a's share is 1 and b's is 0 (scheduler/share.py), so every
invoke b receives is forwarded to a, where the one warm instance runs both kinds. Rounds
interleave a direct run (client -> a) and a forwarded one (client -> b -> a), each over one
kept-alive connection at c=1. Checks that b forwarded every request of its runs (its
dayfly_forwarded_invocations_total) and that the records say node a ran them.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.dayfly import NOOP_SOURCE, dayfly_command, deploy, invoke_path, lambda_client
from harness.procs import connection, expect, free_port, request, running

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nats_helpers import drop_nats  # the tests' clean-up of a cluster's streams

FUNCTION = "bench-forward"


def cluster_args(node: str, port: int, database: str, nats: str, name: str,
                 key_file: Path) -> list[str]:
    return ["--cluster", "--database", database, "--nats", nats, "--cluster-name", name,
            "--node-id", node, "--advertise", f"http://127.0.0.1:{port}",
            "--cluster-key-file", str(key_file)]


@contextlib.contextmanager
def fresh_database(admin_dsn: str) -> Iterator[str]:
    """A new PostgreSQL database for this run (dropped afterwards); yields its DSN."""
    import psycopg

    name = f"dayfly_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"  # the same server, the new database
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def two_nodes(work: Path, database: str, nats: str) -> Iterator[tuple[int, int]]:
    """Nodes a and b of one new cluster; yields their ports."""
    name = f"bench_{secrets.token_hex(4)}"
    key_file = work / "cluster.key"
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o600)
    prefix, env = dayfly_command()
    ports = free_port(), free_port()
    try:
        with fresh_database(database) as dsn, contextlib.ExitStack() as stack:
            for node, port in zip("ab", ports, strict=True):
                data = work / node
                data.mkdir()
                argv = [*prefix, "up", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                        str(data), "--isolation", "process",
                        *cluster_args(node, port, dsn, nats, name, key_file)]
                stack.enter_context(running(argv, port, "/healthz", work / f"{node}.log",
                                            env=env, cwd=data))
            yield ports
    finally:
        drop_nats(name, nats)


def metric(port: int, name: str, labels: str) -> float:
    with connection(port) as conn:
        text = expect(request(conn, "GET", "/metrics"), 200, "metrics").decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and labels in line)


def timed(conn: http.client.HTTPConnection, n: int) -> list[float]:
    path, out = invoke_path(FUNCTION), []
    for _ in range(n):
        t = time.perf_counter()
        expect(request(conn, "POST", path, b"{}"), 200, "invoke")
        out.append(time.perf_counter() - t)
    return out


def measure(port_a: int, port_b: int, requests: int, rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds: `requests` invokes sent to a, then as many to b (forwarded), each
    run on a new kept-alive connection after 20 untimed invokes (a connection idle through the
    other run could pass uvicorn's 5 s keep-alive, and so may the relay's, which reconnects)."""
    samples: dict[str, list[float]] = {"local": [], "forwarded": []}
    for _ in range(rounds):
        for kind, port in (("local", port_a), ("forwarded", port_b)):
            with connection(port) as conn:
                timed(conn, 20)
                samples[kind] += timed(conn, requests)
    return samples


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] * 1000


def report(samples: dict[str, list[float]]) -> float:
    print(f"{'path':<10} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for kind, values in samples.items():
        print(f"{kind:<10} {len(values):>6} {statistics.median(values) * 1000:>8.3f} "
              f"{pct(values, 0.9):>8.3f} {pct(values, 0.99):>8.3f}")
    overhead = (statistics.median(samples["forwarded"]) - statistics.median(samples["local"])) * 1000
    print(f"forwarding overhead, p50: {overhead:.3f} ms (target <= 0.5 ms)")
    return overhead


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="invokes per run")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--database", default=os.environ.get(
        "DAYFLY_BENCH_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL (postgresql://.../DB) allowed to CREATE DATABASE")
    parser.add_argument("--nats", default=os.environ.get("DAYFLY_BENCH_NATS",
                                                         "nats://127.0.0.1:4222"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dayfly-forward-") as tmp, \
            two_nodes(Path(tmp), args.database, args.nats) as (port_a, port_b):
        lam = lambda_client(port_a)
        deploy(lam, FUNCTION, NOOP_SOURCE)
        lam.put_function_concurrency(FunctionName=FUNCTION, ReservedConcurrentExecutions=1)
        wait_visible(port_b)
        before = metric(port_b, "dayfly_forwarded_invocations_total", 'outcome="ok"')
        samples = measure(port_a, port_b, args.requests, args.rounds)
        sent = metric(port_b, "dayfly_forwarded_invocations_total", 'outcome="ok"') - before
        want = len(samples["forwarded"])
        if sent < want:
            print(f"node b forwarded {sent:.0f} of {want} invokes: the comparison is void",
                  file=sys.stderr)
            return 1
        node = ran_on(port_b, port_a)
        print(f"an invoke sent to b ran on node {node!r} (its record says)")
        report(samples)
        if node != "a":
            return 1
    return 0


def wait_visible(port_b: int) -> None:
    """Until node b knows the function and its reserved concurrency (pushed to every node)."""
    lam_b = lambda_client(port_b)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            got = lam_b.get_function_concurrency(FunctionName=FUNCTION)
            if got.get("ReservedConcurrentExecutions") == 1:
                return
        time.sleep(0.1)
    raise RuntimeError("node b did not see the function's reserved concurrency within 10 s")


def ran_on(port_b: int, port_a: int) -> str:
    """The node the record of one more invoke sent to b names (read from a: records are
    shared in a cluster, and a ran it)."""
    with connection(port_b) as conn:
        reply = request(conn, "POST", invoke_path(FUNCTION), b"{}")
    expect(reply, 200, "invoke")
    request_id = reply.headers["X-Amzn-RequestId"]
    with connection(port_a) as conn:
        rec = json.loads(expect(request(conn, "GET", f"/dayfly/v1/invocations/{request_id}"),
                                200, "record"))
    return str(rec.get("node"))


if __name__ == "__main__":
    sys.exit(main())
