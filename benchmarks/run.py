"""Benchmark dayfly against functions-framework and bare uvicorn; write a markdown table.

Usage: python benchmarks/run.py [--quick] [--out benchmarks/results.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from harness.dayfly import bench_dayfly
from harness.measure import REPO_DIR, Row, Settings
from harness.peers import bench_functions_framework, bench_uvicorn
from harness.report import render
from harness.venvs import ensure_venv, local_version, venv_versions
from harness.wrk import require_wrk, wrk_version

BENCH_DIR = Path(__file__).resolve().parent
TITLE = "dayfly vs functions-framework vs bare uvicorn"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, 15 cold starts")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.md")
    parser.add_argument("--tiers", default="process,linux",
                        help="dayfly isolation tiers to run, comma-separated; `linux-rootless` "
                        "runs the linux tier as nobody (default: %(default)s)")
    return parser.parse_args(argv)


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def git_revision() -> str:
    """Return the repo's current commit (with -dirty), or a note when there is none."""
    argv = ["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "no commit yet"


def metadata(settings: Settings, ff_bin: Path, uv_bin: Path) -> list[str]:
    """Return the report's header lines: date, machine, versions, command and run shape."""
    ff = venv_versions(ff_bin, "functions-framework", "gunicorn", "flask")
    uv = venv_versions(uv_bin, "uvicorn", "uvloop", "httptools")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join(["python", *sys.argv])
    return [
        f"date: {now}",
        f"machine: nproc {os.cpu_count()} ({cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start",
        f"tools: wrk {wrk_version()}; functions-framework {ff['functions-framework']} "
        f"(gunicorn {ff['gunicorn']}, Flask {ff['flask']}); uvicorn {uv['uvicorn']} "
        f"(uvloop {uv['uvloop']}, httptools {uv['httptools']}); dayfly "
        f"{local_version('dayfly')} at {git_revision()}; boto3 {local_version('boto3')}",
        f"command: `{command}`",
        f"runs: wrk `-t1 -c1` and `-t2 -c32`, {settings.seconds:g} s each after a "
        f"{settings.warmup_seconds:g} s warm-up at the same concurrency, POST `{{}}` with "
        f"`benchmarks/post.lua`; cold start: {settings.cold_starts} x (scale to zero, then "
        "one timed POST on a kept-alive connection); wrk, servers and harness share the "
        "machine's cores",
    ]


def bench(name: str, measure: Callable[[Row], None]) -> Row:
    """Run one server's measurements, keeping partial results and the error if it fails."""
    print(f"benchmarking {name} ...", file=sys.stderr)
    row = Row(name)
    try:
        measure(row)
    except Exception as exc:  # one failing server must not hide the others
        row.error = "".join(traceback.format_exception(exc, limit=-2)).strip()
        print(f"{name} failed: {exc!r}"[:300], file=sys.stderr)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark, print the report and write it to --out."""
    args = parse_args(argv)
    args.tiers = [t for t in args.tiers.split(",") if t]
    settings = Settings.choose(args.quick)
    require_wrk()
    ff_bin = ensure_venv("ff", "functions-framework", "functions-framework")
    uv_bin = ensure_venv("uv", "uvicorn[standard]", "uvicorn")
    meta = metadata(settings, ff_bin, uv_bin)  # before the runs: date and load at start
    rows = [
        bench("functions-framework", lambda row: bench_functions_framework(row, ff_bin, settings)),
        bench("uvicorn (ceiling)", lambda row: bench_uvicorn(row, uv_bin, settings)),
        *(bench(f"dayfly ({tier} tier)", lambda row, t=tier: bench_dayfly(
            row, settings, t.removesuffix("-rootless"), rootless=t.endswith("-rootless")))
          for tier in args.tiers),
    ]
    report = render(TITLE, meta, rows)
    print(report)
    args.out.write_text(report)
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
