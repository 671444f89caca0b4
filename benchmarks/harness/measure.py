"""Shared settings, the per-server result row, and the HTTP load measurements."""

from __future__ import annotations

import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.wrk import WrkResult, run_wrk

REPO_DIR = Path(__file__).resolve().parents[2]
LATENCY_RUN = (1, 1)  # wrk threads, connections
THROUGHPUT_RUN = (2, 32)
MISSING = "—"
LOOPBACK = ["--host", "127.0.0.1", "--port"]  # CLI flags; the port follows


@dataclass(frozen=True)
class Settings:
    """How long each run lasts and how many cold starts to time."""

    seconds: float
    warmup_seconds: float
    cold_starts: int

    @classmethod
    def choose(cls, quick: bool) -> Settings:
        """Return the --quick or the full settings."""
        return cls(3, 1, 15) if quick else cls(10, 2, 50)


@dataclass
class Row:
    """Everything measured for one server; fields stay None when not measured."""

    name: str
    setup: str = ""
    latency: WrkResult | None = None
    throughput: WrkResult | None = None
    cold_ms: list[float] | None = None
    floor_ms: list[float] | None = None  # fork+exec of `python3 -S -I -c pass`, beside cold_ms
    cold_note: str = "n/a"
    instance_note: str = "n/a"
    instance_pss: tuple[float, int] | None = None  # mean MiB, instances
    tree_pss: tuple[float, int] | None = None  # MiB, processes
    error: str | None = None


def measure_load(row: Row, url: str, settings: Settings) -> None:
    """Warm up, then record latency at c=1 and throughput at c=32 into ROW."""
    run_wrk(url, *LATENCY_RUN, settings.warmup_seconds)
    row.latency = run_wrk(url, *LATENCY_RUN, settings.seconds)
    run_wrk(url, *THROUGHPUT_RUN, settings.warmup_seconds)
    row.throughput = run_wrk(url, *THROUGHPUT_RUN, settings.seconds)


def p50_p99(samples: list[float]) -> tuple[float, float]:
    """Return the 50th and 99th percentiles (inclusive method) of SAMPLES."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def shown_argv(argv: list[str], port: int, work: Path) -> str:
    """Return ARGV as a shell line with the port, temp dir and install paths made generic."""

    def show(arg: str) -> str:
        if arg == str(port):
            return "PORT"
        arg = arg.replace(str(work), "TMP").replace(f"{REPO_DIR}/", "")
        return arg.replace(f"{Path(sys.executable).parent}/", "")

    return shlex.join(show(arg) for arg in argv)
