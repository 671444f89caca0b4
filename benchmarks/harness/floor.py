"""The floor a cold start is held to: fork and exec `python3 -S -I -c pass` on this machine."""

from __future__ import annotations

import os
import statistics
import sys
import time

# the interpreter instances run (dayfly's own runtime), by its real path: a launcher script on
# PATH (pyenv's shims are bash) would time the script instead
PYTHON = os.path.realpath(sys.executable)
ARGV = [PYTHON, "-S", "-I", "-c", "pass"]


def spawn_python_ms() -> float:
    """One fork and exec of `python3 -S -I -c pass` until it has exited, in milliseconds
    (posix_spawn: glibc clones with CLONE_VM|CLONE_VFORK, the cheapest fork there is)."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(PYTHON, ARGV, {})
    os.waitpid(pid, 0)
    return (time.perf_counter() - t0) * 1000


def describe(floor_ms: list[float], cold_ms: list[float]) -> str:
    """`floor p50 F ms: cold p50 = A x F, p99 = B x F` (targets: A <= 1.3, B <= 3)."""
    f = statistics.median(floor_ms)
    s = sorted(cold_ms)
    p50, p99 = statistics.median(s), s[min(len(s) - 1, int(0.99 * len(s)))]
    return (f"floor (fork+exec `{os.path.basename(PYTHON)} -S -I -c pass`, n={len(floor_ms)}) "
            f"p50 {f:.2f} ms: cold p50 {p50 / f:.2f}x, p99 {p99 / f:.2f}x the floor's p50")
