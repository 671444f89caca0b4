"""Table trigger latency: commit -> handler start, p50/p99, for SQLite and PostgreSQL.

Starts `dayfly up` on a scratch data dir, deploys a handler that prints `time.time()` at its
start for every record, maps it to a SQLite table and a PostgreSQL table, commits one row at
a time (spaced, so each change is its own batch on a warm instance), and compares each
commit's time (taken when commit() returns) with the handler's start time from the logs.

Usage: python benchmarks/triggers.py [--samples 300] [--gap-ms 20] [--isolation linux]
           [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import io
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
from harness.procs import start_platform

HANDLER = '''import time

def handler(event, context):
    t = time.time()
    for r in event["Records"]:
        print("RECV", r["dynamodb"]["Keys"]["id"]["N"], repr(t))
    return {}
'''
RECV = re.compile(r"RECV (\d+) ([0-9.]+)")
WARMUP = 10
TARGETS = {"sqlite": 10.0, "postgresql": 20.0}


def deploy(url: str, name: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", HANDLER)
        zf.writestr("dayfly.toml", 'handler = "handler.handler"\nidle_timeout = 3600\n')
    r = httpx.post(f"{url}/dayfly/v1/functions/{name}/deploy", content=buf.getvalue(),
                   headers={"content-type": "application/zip"}, timeout=300)
    if '"function"' not in r.text.strip().splitlines()[-1]:
        raise SystemExit(f"deploy failed: {r.text}")


def handler_starts(url: str, name: str, n: int) -> dict[int, float]:
    r = httpx.get(f"{url}/dayfly/v1/functions/{name}/logs", params={"limit": 1000}, timeout=60)
    return {int(k): float(t) for k, t in RECV.findall(r.text)} if r.status_code == 200 else {}


def measure(url: str, name: str, source: str, commit: Callable[[int], None], samples: int,
            gap_s: float) -> list[float]:
    deploy(url, name)
    r = httpx.post(f"{url}/2015-03-31/event-source-mappings/", json={
        "FunctionName": name, "EventSourceArn": source, "BatchSize": 100}, timeout=60)
    if r.status_code != 202:
        raise SystemExit(f"mapping failed: {r.text}")
    committed: dict[int, float] = {}
    for i in range(WARMUP + samples):
        commit(i)
        committed[i] = time.time()
        time.sleep(gap_s)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        started = handler_starts(url, name, len(committed))
        if len(started) >= len(committed):
            break
        time.sleep(0.5)
    missing = set(committed) - set(started)
    if missing:
        raise SystemExit(f"{len(missing)} changes never reached the handler")
    return [(started[i] - committed[i]) * 1000 for i in range(WARMUP, WARMUP + samples)]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--isolation", default=None, help="tier of the function (default: "
                                                           "the platform's)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dayfly-bench-") as tmp:
        proc, url = start_platform(Path(tmp) / "data", args.isolation)
        try:
            db = sqlite3.connect(Path(tmp) / "app.db", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE bench (id INTEGER PRIMARY KEY, v TEXT)")
            lat = measure(url, "bench-sqlite", f"sqlite://{tmp}/app.db#bench",
                          lambda i: db.execute("INSERT INTO bench VALUES (?, 'x')", (i,)),
                          args.samples, args.gap_ms / 1000)
            rows.append(("sqlite", lat))
            import psycopg

            table = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.pg, autocommit=True) as pg:
                pg.execute(f"CREATE TABLE public.{table} (id int PRIMARY KEY, v text)")
                try:
                    lat = measure(url, "bench-pg", f"{args.pg}#public.{table}",
                                  lambda i: pg.execute(
                                      f"INSERT INTO public.{table} VALUES (%s, 'x')", (i,)),
                                  args.samples, args.gap_ms / 1000)
                    rows.append(("postgresql", lat))
                finally:
                    for m in httpx.get(f"{url}/2015-03-31/event-source-mappings/").json()[
                            "EventSourceMappings"]:
                        httpx.delete(f"{url}/2015-03-31/event-source-mappings/{m['UUID']}")
                    pg.execute(f"DROP TABLE IF EXISTS public.{table}")
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"Commit -> handler start latency ({args.samples} samples each, one change every "
          f"{args.gap_ms:g} ms, warm instance)\n")
    print("| source | samples | p50 ms | p90 ms | p99 ms | max ms | target p50 | met |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    ok = True
    for kind, lat in rows:
        p50 = statistics.median(lat)
        met = p50 <= TARGETS[kind]
        ok &= met
        print(f"| {kind} | {len(lat)} | {p50:.2f} | {pct(lat, 90):.2f} | {pct(lat, 99):.2f} | "
              f"{max(lat):.2f} | <= {TARGETS[kind]:g} ms | {'yes' if met else 'no'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
