"""How many idle isolated instances one machine holds, and what each costs (PSS).

    python benchmarks/density.py [--instances 2000] [--isolation linux] [--runtime python3.12]

Starts `dayfly up`, deploys a standard-library handler with `min_warm = N`, waits until N
instances are idle, then reads every instance's PSS from /proc/PID/smaps_rollup, checks a
sample of them still serve, and prints a markdown table. Stops dayfly (and so every
instance) at the end and times that teardown (benchmarks/harness/teardown.py). A failed run
keeps its server log (the path is printed); the rest of its temporary folder is removed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from harness.teardown import Watch

HANDLER = "import json, os\n\ndef handler(event, context):\n    return {'pid': os.getpid()}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 600) -> bytes:
    # a zip, not the form type urllib would send (a management POST refuses that: docs/security.md)
    headers = {"content-type": "application/zip"} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def idle_count(url: str) -> int:
    """Idle instances of the function `idle`, from /metrics' dayfly_instances gauge."""
    total = 0
    for line in http("GET", f"{url}/metrics").decode().splitlines():
        if (line.startswith("dayfly_instances{") and 'function="idle"' in line
                and 'state="idle"' in line):
            total += int(float(line.rpartition(" ")[2]))
    return total


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=2000)
    ap.add_argument("--isolation", default="linux")
    ap.add_argument("--runtime", default=None, help="e.g. python3.12 (default: dayfly's own)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to reach N idle")
    args = ap.parse_args()
    n = args.instances
    tmp = tempfile.mkdtemp(prefix="dayfly-density-")
    status = 1
    try:
        status = run(args, n, tmp)
        return status
    finally:
        log = Path(tmp) / "server.log"
        if status != 0 and log.exists():
            kept = Path(tempfile.gettempdir()) / f"density-failed-{os.getpid()}.log"
            shutil.copyfile(log, kept)
            print(f"the run failed; its server log is kept: {kept}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, n: int, tmp: str) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "dayfly.cli.main", "up", "--port", str(port),
                             "--data-dir", f"{tmp}/data", "--isolation", args.isolation],
                            stdout=log, stderr=subprocess.STDOUT)
    ok, rows = False, []
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"dayfly up exited with status {proc.returncode}")
            try:
                http("GET", f"{url}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("handler.py", HANDLER)
            zf.writestr("dayfly.toml", f"max_instances = {n}\nmin_warm = {n}\n"
                                       "idle_timeout = 3600\n" + (
                                           f'runtime = "{args.runtime}"\n' if args.runtime
                                           else ""))
        t0 = time.monotonic()
        out = http("POST", f"{url}/dayfly/v1/functions/idle/deploy", buf.getvalue())
        assert b'"function"' in out.splitlines()[-1], out[-500:]
        # polled on /metrics (a count); the instances API reads every instance's /proc stats,
        # thousands of page-table walks per poll that the starts would share the cores with
        while time.monotonic() - t0 < args.timeout and idle_count(url) < n:
            time.sleep(1)
        elapsed = time.monotonic() - t0
        inst = json.loads(http("GET", f"{url}/dayfly/v1/functions/idle/instances"))
        idle = [i for i in inst["instances"] if i["state"] == "idle"]
        pss = [pss_kib(i["pid"]) for i in idle]
        served = 0
        for _ in range(50):
            r = json.loads(http("POST", f"{url}/2015-03-31/functions/idle/invocations", b"{}"))
            served += "pid" in r
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        free = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in meminfo)
                if k == "MemAvailable"}
        rows = [
            ("isolation tier", args.isolation),
            ("runtime", args.runtime or "dayfly's own"),
            ("idle instances reached", f"{len(idle)} of {n} in {elapsed:.1f} s"),
            ("PSS per instance, mean", f"{statistics.mean(pss) / 1024:.2f} MiB" if pss else "-"),
            ("PSS per instance, p50 / max", f"{statistics.median(pss) / 1024:.2f} / "
                                            f"{max(pss) / 1024:.2f} MiB" if pss else "-"),
            ("PSS of all instances", f"{sum(pss) / 1024:.0f} MiB"),
            ("invocations served afterwards", f"{served} of 50"),
            ("MemAvailable with all warm", f"{free['MemAvailable'] / 1024 / 1024:.1f} GiB"),
        ]
        ok = len(idle) >= n and served == 50
    finally:
        watch = Watch(proc.pid)  # dayfly stops every instance as it exits
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        exited = time.monotonic() - watch.t0
        watch.until_gone(args.timeout)
        log.close()
    rows += [("dayfly exited after SIGINT", f"{exited:.1f} s"), *watch.rows()]
    print(f"| {n} idle instances | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0 if ok and not watch.left else 1


if __name__ == "__main__":
    sys.exit(main())
