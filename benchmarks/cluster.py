"""Cluster mode's numbers (issue 14, point 8) in one run, each beside its single-node peer.

    python benchmarks/cluster.py [--seconds 5] [--rounds 3] [--events 200] [--no-peers]
        [--database postgresql://postgres@127.0.0.1:5432/postgres] [--nats nats://127.0.0.1:4222]

Every node is a real `dayfly up` process on loopback (process tier), load comes from wrk
(benchmarks/post.lua); everything started is stopped, and the PostgreSQL databases and NATS
streams made for the run are dropped, before it ends.

1. Warm local invoke of `return {}`: a single node (SQLite) and a cluster node (PostgreSQL,
   NATS; alone in its cluster, so nothing is forwarded), both up at once, rounds interleaved:
   wrk c=1 (p50) and c=32 (req/s). Target: cluster within 10 % of single node.
2. Event to handler: Event invokes sent one at a time (20 ms apart) to each node; the handler
   returns time.time() at its start, read back from the invocation record; p50 of that minus
   the moment the client had the 202. Target: <= 10 ms, JetStream (cluster) and SQLite.
3. 2 nodes vs 1: a CPU-bound handler (~5 ms of arithmetic) on a new two-node cluster, node a
   under `taskset -c 0` and node b under `taskset -c 1` (their instances inherit it); rounds
   interleave wrk on a alone (b idle, a has room so nothing is forwarded) and one wrk on each
   node at once. Target: aggregate req/s ratio near 2.
4. Unless --no-peers: benchmarks/queue_enqueue.py (Event enqueue rate, target >= 5,000/s) and
   benchmarks/forward.py (forwarding overhead, target <= 0.5 ms p50) run after, their lines
   quoted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from forward import cluster_args, drop_nats, fresh_database
from harness.dayfly import NOOP_SOURCE, dayfly_command, deploy, invoke_path, lambda_client
from harness.procs import connection, expect, free_port, request, running
from harness.wrk import require_wrk, run_wrk

HERE = Path(__file__).resolve().parent
NOOP, EVENT, CPU = "bench-noop", "bench-event", "bench-cpu"
EVENT_SOURCE = "import time\n\n\ndef handler(event, context):\n    return {'t': time.time()}\n"
CPU_SOURCE = ("def handler(event, context):\n    x = 0\n    for i in range({n}):\n"
              "        x += i * i\n    return {{'x': x}}\n")
CPU_MS = 5.0


@dataclass
class Cluster:
    """A cluster made for this run: its database, NATS prefix and key."""

    work: Path
    dsn: str
    name: str
    key_file: Path
    nats: str
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def node(self, node_id: str, cpu: int | None = None) -> int:
        """Start `dayfly up --cluster` as `node_id` (under taskset if `cpu`); its port."""
        port = free_port()
        argv = node_argv(self.work / node_id, port, cpu)
        argv += cluster_args(node_id, port, self.dsn, self.nats, self.name, self.key_file)
        self.stack.enter_context(running(argv, port, "/healthz", self.work / f"{node_id}.log",
                                         env=dayfly_command()[1], cwd=self.work / node_id))
        return port


def node_argv(data: Path, port: int, cpu: int | None) -> list[str]:
    data.mkdir(parents=True)
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return [*pin, *dayfly_command()[0], "up", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data), "--isolation", "process", "--log-level", "warning"]


@contextlib.contextmanager
def new_cluster(work: Path, database: str, nats: str) -> Iterator[Cluster]:
    """A fresh database and NATS prefix; nodes started on it stop, and both go, at the end."""
    name = f"bench_{secrets.token_hex(4)}"
    work.mkdir()
    key_file = work / "cluster.key"
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o600)
    try:
        with fresh_database(database) as dsn:
            c = Cluster(work, dsn, name, key_file, nats=nats)
            with c.stack:
                yield c
    finally:
        drop_nats(name, nats)


@contextlib.contextmanager
def single_node(work: Path) -> Iterator[int]:
    port = free_port()
    argv = node_argv(work / "single", port, None)
    with running(argv, port, "/healthz", work / "single.log", env=dayfly_command()[1],
                 cwd=work / "single"):
        yield port


def url(port: int, name: str) -> str:
    return f"http://127.0.0.1:{port}{invoke_path(name)}"


def warm_up(port: int, name: str, n: int = 20) -> None:
    """`n` invokes (after waiting up to 10 s for a node to hear of a deploy through another)."""
    deadline = time.monotonic() + 10
    with connection(port, timeout=60) as conn:
        while request(conn, "POST", invoke_path(name), b"{}").status == 404:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node on {port} does not know {name}")
            time.sleep(0.1)
        for _ in range(n):
            expect(request(conn, "POST", invoke_path(name), b"{}"), 200, f"invoke {name}")


# -- 1. warm local invoke -------------------------------------------------------------------

def warm_invokes(ports: dict[str, int], seconds: float, rounds: int) -> dict[str, dict]:
    """{mode: {"p50": [ms per round], "rps": [req/s per round], "requests": n}}, rounds
    interleaved."""
    out: dict[str, dict] = {m: {"p50": [], "rps": [], "requests": 0} for m in ports}
    for _ in range(rounds):
        for mode, port in ports.items():
            one = run_wrk(url(port, NOOP), 1, 1, seconds)
            many = run_wrk(url(port, NOOP), 2, 32, seconds)
            for run in (one, many):
                if run.errors or not run.requests:
                    raise RuntimeError(f"{mode}: wrk saw errors: {run}")
            out[mode]["p50"].append(one.p50_ms)
            out[mode]["rps"].append(many.requests_per_sec)
            out[mode]["requests"] += one.requests + many.requests
    return out


def commits(dsn: str) -> int:
    """Transactions committed in the cluster's database so far (PostgreSQL's statistics:
    every node's work, background included; they lag by up to a second or so)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_stat_force_next_flush(), xact_commit FROM pg_stat_database"
                           " WHERE datname = current_database()").fetchone()
    return int(row[1]) if row else 0


# -- 2. event to handler --------------------------------------------------------------------

def event_to_handler(port: int, events: int) -> dict[str, list[float]]:
    """Milliseconds to each handler's start (read from the records) from the moment the
    client had the 202 ("202") and from when it sent the request ("sent")."""
    run = secrets.token_hex(4)  # this call's events only, not an earlier call's
    times: dict[str, tuple[float, float]] = {}
    with connection(port) as conn:
        for i in range(events):
            body = json.dumps({"run": run, "i": i})
            sent = time.time()
            conn.request("POST", invoke_path(EVENT), body=body.encode(),
                         headers={"Content-Type": "application/json",
                                  "X-Amz-Invocation-Type": "Event"})
            reply = conn.getresponse()
            reply.read()
            if reply.status != 202:
                raise RuntimeError(f"Event invoke: HTTP {reply.status}")
            times[body] = (sent, time.time())
            time.sleep(0.02)
    out: dict[str, list[float]] = {"202": [], "sent": []}
    deadline = time.monotonic() + 60
    while len(out["202"]) < events and time.monotonic() < deadline:
        time.sleep(0.2)
        with connection(port) as conn:
            body = expect(request(conn, "GET", f"/dayfly/v1/functions/{EVENT}/invocations"
                                  f"?limit={events + 50}"), 200, "records")
        out = {"202": [], "sent": []}
        for r in json.loads(body)["invocations"]:
            if r["event"] in times and r["status"] == "success":
                started = json.loads(r["result"])["t"]
                sent, accepted = times[r["event"]]
                out["202"].append((started - accepted) * 1000)
                out["sent"].append((started - sent) * 1000)
    if len(out["202"]) < events:
        raise RuntimeError(f"only {len(out['202'])} of {events} events reached the handler")
    return out


# -- 3. CPU-bound work on 1 and 2 nodes -----------------------------------------------------

def calibrate(ms: float) -> int:
    """Loop iterations of CPU_SOURCE's handler that take about `ms` here."""
    n = 100_000
    scope: dict = {}
    exec(CPU_SOURCE.format(n=n), scope)  # our own constant source
    best = min(timed(scope["handler"]) for _ in range(15))
    return max(1000, int(n * ms / 1000 / best))


def timed(fn) -> float:
    t = time.perf_counter()
    fn({}, None)
    return time.perf_counter() - t


def spread(port_a: int, port_b: int, seconds: float, rounds: int) -> dict[str, list[float]]:
    """Aggregate req/s of CPU on node a alone and on a and b at once (a wrk each)."""
    out: dict[str, list[float]] = {"1 node": [], "2 nodes": []}
    for _ in range(rounds):
        alone = run_wrk(url(port_a, CPU), 1, 4, seconds)
        out["1 node"].append(alone.requests_per_sec)
        with wrk_beside(port_b, seconds) as other:
            mine = run_wrk(url(port_a, CPU), 1, 4, seconds)
        for run in (alone, mine, other()):
            if run.errors or not run.requests:
                raise RuntimeError(f"CPU run saw errors: {run}")
        out["2 nodes"].append(mine.requests_per_sec + other().requests_per_sec)
    return out


@contextlib.contextmanager
def wrk_beside(port: int, seconds: float) -> Iterator:
    """wrk on `port` in a thread while the block runs; yields a getter of its result."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(run_wrk, url(port, CPU), 1, 4, seconds)
        yield fut.result
        fut.result()


def invocations_by_node(ports: dict[str, int], name: str) -> dict[str, float]:
    """Finished invocations of `name` each node counted (its own /metrics)."""
    out = {}
    for node, port in ports.items():
        with connection(port) as conn:
            text = expect(request(conn, "GET", "/metrics"), 200, "metrics").decode()
        out[node] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("dayfly_invocations_total{")
                        and f'function="{name}"' in line)
    return out


# -- machine load -------------------------------------------------------------------------

def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


# -- peers ---------------------------------------------------------------------------------

def peer(script: str, *args: str, pick: str) -> tuple[str, str]:
    """Run a sibling benchmark; (its command, the lines matching `pick`)."""
    argv = [sys.executable, str(HERE / script), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=HERE)
    command = f"python benchmarks/{script} {' '.join(args)}".strip()
    if done.returncode != 0:
        return command, f"failed ({done.returncode}): {(done.stderr or done.stdout)[-300:]}"
    return command, "; ".join(line.strip() for line in done.stdout.splitlines()
                              if re.search(pick, line))


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--events", type=int, default=200, help="Event invokes per mode")
    parser.add_argument("--no-peers", action="store_true",
                        help="skip queue_enqueue.py and forward.py")
    parser.add_argument("--database", default=os.environ.get(
        "DAYFLY_BENCH_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL (postgresql://.../DB) allowed to CREATE DATABASE")
    parser.add_argument("--nats", default=os.environ.get("DAYFLY_BENCH_NATS",
                                                         "nats://127.0.0.1:4222"))
    args = parser.parse_args()
    require_wrk()
    load0, cpu0, t0 = os.getloadavg()[0], cpu_times(), time.time()
    with tempfile.TemporaryDirectory(prefix="dayfly-cluster-") as tmp:
        work = Path(tmp)
        with single_node(work) as single, \
                new_cluster(work / "c1", args.database, args.nats) as c1:
            ports = {"cluster": c1.node("a"), "single": single}
            for port in ports.values():
                lam = lambda_client(port)
                deploy(lam, NOOP, NOOP_SOURCE)
                deploy(lam, EVENT, EVENT_SOURCE)
                warm_up(port, NOOP)
                warm_up(port, EVENT, 3)
            commits0 = commits(c1.dsn)
            warm = warm_invokes(ports, args.seconds, args.rounds)
            time.sleep(2)  # the node's last record batch written, statistics flushed
            warm["cluster"]["commits"] = commits(c1.dsn) - commits0
            events = {mode: event_to_handler(port, args.events) for mode, port in ports.items()}
        n = calibrate(CPU_MS)
        with new_cluster(work / "c2", args.database, args.nats) as c2:
            cpu_ports = {"a": c2.node("a", cpu=0), "b": c2.node("b", cpu=1)}
            lam = lambda_client(cpu_ports["a"])
            deploy(lam, CPU, CPU_SOURCE.format(n=n))
            for port in cpu_ports.values():
                warm_up(port, CPU, 8)  # b runs it too: its code fetched, instances started
            before = invocations_by_node(cpu_ports, CPU)
            cpu = spread(cpu_ports["a"], cpu_ports["b"], args.seconds, args.rounds)
            after = invocations_by_node(cpu_ports, CPU)
    busy = cpu_times()
    load1 = os.getloadavg()[0]
    busy_pct = 100 * (busy[0] - cpu0[0]) / max(1, busy[1] - cpu0[1])
    peers = []
    if not args.no_peers:
        peers.append(peer("queue_enqueue.py", "--events", "20000", pick=r"^\| (JetStream|SQLite)"))
        peers.append(peer("forward.py", "--requests", "500", "--rounds", "4",
                          pick=r"overhead|^(local|forwarded) "))
    report(args, warm, events, cpu, n, before, after, peers,
           (load0, load1, busy_pct, time.time() - t0))
    return 0


def report(args, warm, events, cpu, n, before, after, peers, load) -> None:
    w_c, w_s = warm["cluster"], warm["single"]
    e_c, e_s = med(events["cluster"]["202"]), med(events["single"]["202"])
    rows = [
        ("warm invoke c=1, p50 ms", med(w_c["p50"]), med(w_s["p50"]),
         med(w_c["p50"]) / med(w_s["p50"]), "cluster <= 1.10 x single"),
        ("warm invoke c=32, req/s", med(w_c["rps"]), med(w_s["rps"]),
         med(w_c["rps"]) / med(w_s["rps"]), "cluster >= 0.90 x single"),
        ("event -> handler, p50 ms", e_c, e_s, e_c / e_s if e_s else float("nan"),
         "<= 10 ms each"),
        ("CPU-bound req/s, 2 nodes / 1", med(cpu["2 nodes"]), med(cpu["1 node"]),
         med(cpu["2 nodes"]) / med(cpu["1 node"]), "near 2"),
    ]
    print(f"\n{args.rounds} interleaved rounds of {args.seconds:g} s wrk runs; "
          f"{args.events} Event invokes per mode; loopback, process tier\n")
    print("| measure | cluster | single node (or 1 node) | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for what, c, s, ratio, target in rows:
        print(f"| {what} | {c:,.3f} | {s:,.3f} | {ratio:.2f} | {target} |")
    per_k = 1000 * w_c["commits"] / w_c["requests"]
    print(f"\nwarm invokes on the cluster node: {w_c['requests']:,} requests, "
          f"{w_c['commits']:,} PostgreSQL transactions in the same time ({per_k:.2f} per 1,000 "
          f"invokes: record batches, leases and the benchmark's own reads)")
    print(f"per round: warm c=1 p50 cluster {fmt(w_c['p50'])}, single {fmt(w_s['p50'])}; "
          f"c=32 req/s cluster {fmt(w_c['rps'])}, single {fmt(w_s['rps'])}")
    for mode, by in events.items():
        q = sorted(by["202"])
        print(f"event -> handler {mode}: from the 202 p50 {med(q):.2f} ms, p90 "
              f"{q[int(len(q) * .9)]:.2f} ms, max {q[-1]:.2f} ms; from sending the request "
              f"p50 {med(by['sent']):.2f} ms ({len(q)} events)")
    print(f"CPU-bound handler: {n:,} loop iterations (~{CPU_MS:g} ms here); req/s per round "
          f"1 node {fmt(cpu['1 node'])}, 2 nodes {fmt(cpu['2 nodes'])}; invocations run "
          f"by node: {({k: int(after[k] - before[k]) for k in after})}")
    for command, lines in peers:
        print(f"`{command}`: {lines}")
    load0, load1, busy_pct, took = load
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load0:.2f} at start, {load1:.2f} "
          f"after the cluster runs; CPUs {busy_pct:.0f} % busy over them ({took:.0f} s)")


def fmt(values: list[float]) -> str:
    return "/".join(f"{v:,.2f}" if v < 100 else f"{v:,.0f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
