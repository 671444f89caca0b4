"""Goodput under overload: a function limited to 2 instances, driven by wrk with 1x, 2x, 5x and
10x as many connections as its queue holds; every run against one node, the peak in the same run.

    python benchmarks/overload.py [--queue 32] [--seconds 10] [--rounds 2] [--out FILE]

Each connection sends POST {} again as soon as it has a reply (wrk is a closed loop and ignores
Retry-After). Successful req/s and 429/s come from wrk's replies by status
(`benchmarks/status.lua`). The latency of successes comes from a probe beside wrk: one
more client sending one request at a time on its own connection, timing each, and waiting the
Retry-After it is given after a 429 (wrk's own latency mixes 429s with successes). With
`--rounds N` the sweep runs N times, interleaved, and each row is the mean (min-max) of its runs.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from harness.dayfly import dayfly_command, invoke_path
from harness.measure import p50_p99
from harness.procs import free_port, running
from harness.wrk import require_wrk, wrk_version

FUNCTION = "work"
SOURCE = ("def handler(event, context):\n"
          "    s = 0\n"
          "    for i in range(20000):  # a little work: about a millisecond\n"
          "        s += i\n"
          "    return {'s': s}\n")
LUA = Path(__file__).resolve().parent / "status.lua"
STATUS_RE = re.compile(r"Statuses: ok (\d+) throttled (\d+) other (\d+)")
SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class Probe(threading.Thread):
    """One client among the load: one request at a time, its latency if it succeeded."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stopped = threading.Event()
        self.ok_s: list[float] = []
        self.throttled = 0
        self.failed = 0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stopped.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", invoke_path(FUNCTION), body=b"{}",
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException):
                self.failed += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            if r.status == 200:
                self.ok_s.append(time.perf_counter() - t0)
            elif r.status == 429:
                self.throttled += 1
                self.stopped.wait(float(r.getheader("Retry-After") or 1))
            else:
                self.failed += 1
        conn.close()


def deploy(port: int) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", SOURCE)
    body = json.dumps({"FunctionName": FUNCTION, "Handler": "handler.handler",
                       "Runtime": "python3.11", "Dayfly": {"MaxInstances": 2},
                       "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/2015-03-31/functions", body=body,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 201:
        raise RuntimeError(f"deploy failed: {r.status} {r.read()!r}")
    r.read()
    conn.request("POST", invoke_path(FUNCTION), body=b"{}")
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"first invoke failed: {r.status} {r.read()!r}")
    r.read()


def wrk(port: int, connections: int, seconds: float) -> dict[str, float]:
    """One wrk run; its replies by status per second and its socket errors."""
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "-s",
            str(LUA), f"http://127.0.0.1:{port}{invoke_path(FUNCTION)}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120,
                         check=True).stdout
    found = STATUS_RE.search(out)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    ok, throttled, other = map(int, found.groups())
    sockets = SOCKET_RE.search(out)
    return {"ok": ok / seconds, "throttled": throttled / seconds, "other": other,
            "socket_errors": sum(map(int, sockets.groups())) if sockets else 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", type=int, default=32, help="the node's --max-queue")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    ap.add_argument("--multiples", default="1,2,5,10", help="connections / queue size")
    ap.add_argument("--rounds", type=int, default=2, help="sweeps, interleaved")
    ap.add_argument("--old", action="store_true",
                    help="the node predates --max-queue (its queue is 256): pass neither option")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    require_wrk()
    multiples = [int(m) for m in args.multiples.split(",")]
    prefix, env = dayfly_command()
    port = free_port()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dayfly-overload-") as tmp:
        argv = [*prefix, "up", "--port", str(port), "--data-dir", f"{tmp}/data"]
        if not args.old:
            argv += ["--max-queue", str(args.queue), "--max-connections-per-client", "0"]
        with running(argv, port, "/healthz", Path(tmp) / "server.log", env=env):
            deploy(port)
            wrk(port, args.queue, 3)  # warm-up: both instances started
            for _ in range(args.rounds):
                for m in multiples:
                    probe = Probe(port)
                    probe.start()
                    result = wrk(port, m * args.queue, args.seconds)
                    probe.stopped.set()
                    probe.join()
                    rows.append((m, result, probe))
    runs = {m: [(r, p) for mm, r, p in rows if mm == m] for m in multiples}
    mean_ok = {m: statistics.mean(r["ok"] for r, _ in runs[m]) for m in multiples}
    peak = max(mean_ok.values())
    shown = " ".join(["python", *sys.argv])
    lines = [f"`{shown}` (wrk {wrk_version()}, `-t2`, queue {args.queue}, max_instances 2, "
             f"{args.seconds:g} s per run, {args.rounds} interleaved rounds, one node for all "
             "runs)", "",
             "| connections | successful req/s | % of peak | 429/s | other / socket errors | "
             "probe: successes, p50 / p99 latency | probe: 429s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in multiples:
        oks = [r["ok"] for r, _ in runs[m]]
        ok_s = [s * 1000 for _, p in runs[m] for s in p.ok_s]
        p50, p99 = p50_p99(ok_s) if len(ok_s) > 1 else (float("nan"), float("nan"))
        throttled = statistics.mean(r["throttled"] for r, _ in runs[m])
        other = sum(r["other"] for r, _ in runs[m])
        errors = sum(r["socket_errors"] for r, _ in runs[m])
        lines.append(f"| {m * args.queue} ({m}x) | {mean_ok[m]:,.0f} ({min(oks):,.0f}-"
                     f"{max(oks):,.0f}) | {mean_ok[m] / (peak or 1) * 100:.0f} % | {throttled:,.0f} | "
                     f"{other:.0f} / {errors:.0f} | {len(ok_s)}, {p50:.1f} / {p99:.1f} ms | "
                     f"{sum(p.throttled for _, p in runs[m])} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
