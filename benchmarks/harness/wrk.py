"""Run wrk with the POST script and parse its report."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent.parent / "post.lua"
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
PERCENTILE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(\d+(?:\.\d+)?)(us|ms|s|m|h)\s*$", re.M)
RPS_RE = re.compile(r"^Requests/sec:\s+(\d+(?:\.\d+)?)", re.M)
TOTAL_RE = re.compile(r"^\s*(\d+) requests in ", re.M)
NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
FUNCTION_RE = re.compile(r"^Function errors: (\d+)", re.M)  # printed by post.lua


@dataclass(frozen=True)
class WrkResult:
    """The numbers the report uses from one wrk run."""

    requests: int
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    function_errors: int

    @property
    def errors(self) -> int:
        """Return non-2xx responses, socket errors and Lambda function errors together."""
        return self.non_2xx + self.socket_errors + self.function_errors


def wrk_version() -> str:
    """Return wrk's version string, e.g. 'debian/4.1.0-3+b2'."""
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"wrk (\S+)", out)
    return match.group(1) if match else "unknown"


def require_wrk() -> None:
    """Exit with an install hint when wrk is not on PATH."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install it with `apt-get install -y wrk`")


def wrk_argv(url: str, threads: int, connections: int, seconds: float,
             script: Path | None = LUA_SCRIPT) -> list[str]:
    """Return the wrk command line for one run (without SCRIPT: plain GETs)."""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        *(["-s", str(script)] if script else []),
        url,
    ]


def run_wrk(url: str, threads: int, connections: int, seconds: float,
            script: Path | None = LUA_SCRIPT) -> WrkResult:
    """Run wrk against URL and return its parsed report."""
    argv = wrk_argv(url, threads, connections, seconds, script)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk --latency output into a WrkResult."""
    percentiles = {
        float(pct): float(value) * UNIT_MS[unit] for pct, value, unit in PERCENTILE_RE.findall(text)
    }
    rps, total = RPS_RE.search(text), TOTAL_RE.search(text)
    if rps is None or total is None or 50.0 not in percentiles or 99.0 not in percentiles:
        raise ValueError(f"unexpected wrk output:\n{text}")
    non_2xx, sockets = NON_2XX_RE.search(text), SOCKET_RE.search(text)
    function_errors = FUNCTION_RE.search(text)
    return WrkResult(
        requests=int(total.group(1)),
        requests_per_sec=float(rps.group(1)),
        p50_ms=percentiles[50.0],
        p99_ms=percentiles[99.0],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, sockets.groups())) if sockets else 0,
        function_errors=int(function_errors.group(1)) if function_errors else 0,
    )
