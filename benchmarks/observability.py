"""Does watching dayfly slow it down? Warm invoke latency and throughput of a no-op function,
(a) alone and (b) while /metrics is scraped every second and the dashboard's API endpoints are
polled every second, measured in the same run, alternating a and b.

    python benchmarks/observability.py [--seconds 10] [--rounds 2] [--out FILE]

Prints a markdown table: wrk at c=1 (p50) and c=32 (requests/s), and the difference in %.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.dayfly import (
    NOOP_FUNCTION,
    NOOP_SOURCE,
    dayfly_command,
    deploy,
    invoke_path,
    lambda_client,
)
from harness.procs import check_invoke, free_port, running
from harness.wrk import WrkResult, require_wrk, run_wrk, wrk_version

RUNS = {"c=1": (1, 1), "c=32": (2, 32)}
METRICS = ["/metrics"]
# what an open dashboard asks for every few seconds: the overview, and one function's page
# what an open dashboard asks for every 5 s, per page it shows
PAGES = {
    "overview": ["/dayfly/v1/stats?window=3600", "/dayfly/v1/bucket-triggers",
                 "/2015-03-31/event-source-mappings/", "/dayfly/v1/schedules"],
    "function": [f"/dayfly/v1/functions/{NOOP_FUNCTION}/stats?window=3600",
                 f"/dayfly/v1/functions/{NOOP_FUNCTION}/invocations?limit=100",
                 f"/2015-03-31/functions/{NOOP_FUNCTION}"],
}
DASHBOARD: list[str] = []  # set from --pages


class Poller(threading.Thread):
    """GETs a list of paths once per interval on one kept-alive connection, until stopped."""

    def __init__(self, port: int, paths: list[str], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port, self.paths, self.interval = port, paths, interval
        self.stopped = threading.Event()
        self.requests = 0
        self.errors = 0
        self.seconds: list[float] = []  # wall time of each round of requests

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stopped.is_set():
            t0 = time.perf_counter()
            for path in self.paths:
                try:
                    conn.request("GET", path)
                    r = conn.getresponse()
                    r.read()
                    self.requests += 1
                    self.errors += r.status != 200
                except (OSError, http.client.HTTPException):
                    self.errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.seconds.append(time.perf_counter() - t0)
            self.stopped.wait(max(0.0, self.interval - (time.perf_counter() - t0)))
        conn.close()


@contextlib.contextmanager
def watching(port: int, on: bool):
    """Run the metrics scraper and the dashboard poller around the block (if on)."""
    # Prometheus scrapes every second; an open dashboard refreshes every 5 s (overview.js,
    # function.js) — here both of its pages at once, as if two were open
    pollers = [Poller(port, METRICS, 1.0), Poller(port, DASHBOARD, 5.0)] if on else []
    for p in pollers:
        p.start()
    try:
        yield pollers
    finally:
        for p in pollers:
            p.stopped.set()
        for p in pollers:
            p.join()


def measure(port: int, seconds: float, rounds: int) -> dict[tuple[str, bool], list[WrkResult]]:
    url = f"http://127.0.0.1:{port}{invoke_path(NOOP_FUNCTION)}"
    out: dict[tuple[str, bool], list[WrkResult]] = {}
    polls: list[Poller] = []
    for run, (threads, conns) in RUNS.items():
        run_wrk(url, threads, conns, 2)  # warm-up: instances started, caches hot
        for _ in range(rounds):
            for on in (False, True):
                with watching(port, on) as pollers:
                    out.setdefault((run, on), []).append(run_wrk(url, threads, conns, seconds))
                polls.extend(pollers)
    bad = sum(p.errors for p in polls)
    if bad:
        raise RuntimeError(f"{bad} polling requests failed")
    slowest = max((s for p in polls for s in p.seconds), default=0.0)
    print(f"polling: {sum(p.requests for p in polls)} requests, slowest round {slowest:.3f} s",
          file=sys.stderr)
    return out


def report(results: dict[tuple[str, bool], list[WrkResult]], argv: str) -> str:
    lines = [f"`{argv}` (wrk {wrk_version()}); mean of each mode's runs, alternated a/b/a/b",
             "", "| run | metric | (a) alone | (b) watched | difference |",
             "| --- | --- | ---: | ---: | ---: |"]
    for run in RUNS:
        a, b = results[(run, False)], results[(run, True)]
        errors = sum(r.errors for r in a + b)
        for metric, unit, get in (("warm p50", "ms", lambda r: r.p50_ms),
                                  ("throughput", "req/s", lambda r: r.requests_per_sec)):
            va, vb = statistics.mean(map(get, a)), statistics.mean(map(get, b))
            lines.append(f"| {run} | {metric} | {va:,.3f} {unit} | {vb:,.3f} {unit} | "
                         f"{(vb - va) / va * 100:+.1f} % |")
        if errors:
            lines.append(f"| {run} | errors | | | ⚠ {errors} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    ap.add_argument("--rounds", type=int, default=2, help="a/b pairs per concurrency")
    ap.add_argument("--isolation", default=None, help="isolation tier (default: dayfly's)")
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument("--pages", default="function",
                    help="dashboard pages open at once, comma-separated: overview,function "
                         "(default: one dashboard on a function page)")
    args = ap.parse_args()
    DASHBOARD[:] = [path for page in args.pages.split(",") for path in PAGES[page]]
    require_wrk()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-obs-") as tmp:
        work = Path(tmp)
        prefix, env = dayfly_command()
        argv = [*prefix, "up", "--port", str(port), "--data-dir", str(work / "data")]
        if args.isolation:
            argv += ["--isolation", args.isolation]
        with running(argv, port, "/healthz", work / "server.log", env=env, cwd=work):
            deploy(lambda_client(port), NOOP_FUNCTION, NOOP_SOURCE)
            check_invoke(port, invoke_path(NOOP_FUNCTION))
            results = measure(port, args.seconds, args.rounds)
    shown = " ".join(["python", "benchmarks/observability.py", *sys.argv[1:]])
    text = report(results, shown)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
