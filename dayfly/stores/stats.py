"""Aggregates of invocation records over a time window, for the dashboard and `dayfly top`.

One indexed range read per request (`invocations_window` covers the overview), aggregated in
Python: percentiles are nearest-rank over the window's durations.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of an ascending list; None if it is empty."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 3)


def _summary(durations: list[float], errors: int, cold: int, window_s: float,
             last: float | None) -> dict[str, Any]:
    durations.sort()
    n = len(durations)
    return {"invocations": n, "errors": errors, "cold": cold,
            "per_min": round(n / (window_s / 60), 3),
            "error_rate": round(errors / n, 4) if n else 0.0,
            "cold_share": round(cold / n, 4) if n else 0.0,
            "p50_ms": percentile(durations, 50), "p99_ms": percentile(durations, 99),
            "last": last}


def overview(conn: sqlite3.Connection, since: float, window_s: float) -> dict[str, dict[str, Any]]:
    """Per function: count, errors, cold starts, rate, error rate, p50/p99, last invocation."""
    acc: dict[str, list[Any]] = {}  # function -> [durations, errors, cold, last]
    for function, start, duration, status, cold in conn.execute(
            "SELECT function, start, duration_ms, status, cold FROM invocations "
            "INDEXED BY invocations_window WHERE start >= ?", (since,)):
        a = acc.get(function)
        if a is None:
            a = acc[function] = [[], 0, 0, start]
        a[0].append(duration)
        a[1] += status != "success"
        a[2] += cold
        if start > a[3]:
            a[3] = start
    return {f: _summary(d, e, c, window_s, last) for f, (d, e, c, last) in acc.items()}


def function_stats(conn: sqlite3.Connection, function: str, since: float, window_s: float,
                   step_s: float) -> dict[str, Any]:
    """One function over a window: summary, cold vs warm, cold-start breakdown, time series."""
    rows = conn.execute("SELECT start, duration_ms, status, cold, fork_ms, init_ms FROM "
                        "invocations WHERE function = ? AND start >= ?", (function, since)
                        ).fetchall()
    buckets = max(1, math.ceil(window_s / step_s))
    series: list[list[Any]] = [[[], 0, 0] for _ in range(buckets)]
    warm: list[float] = []
    cold: list[float] = []
    fork = init = 0.0
    by_status: dict[str, int] = {}
    last = None
    for start, duration, status, is_cold, fork_ms, init_ms in rows:
        b = series[min(buckets - 1, max(0, int((start - since) // step_s)))]
        b[0].append(duration)
        b[1] += status != "success"
        b[2] += is_cold
        by_status[status] = by_status.get(status, 0) + 1
        if is_cold:
            cold.append(duration)
            fork += fork_ms
            init += init_ms
        else:
            warm.append(duration)
        last = start if last is None or start > last else last
    errors = sum(n for s, n in by_status.items() if s != "success")
    summary = _summary(warm + cold, errors, len(cold), window_s, last)
    summary["by_status"] = by_status
    for lst in (warm, cold, *(b[0] for b in series)):
        lst.sort()
    n_cold = len(cold)
    return {
        "summary": summary,
        "warm": {"count": len(warm), "p50_ms": percentile(warm, 50), "p99_ms": percentile(warm, 99)},
        "cold": {"count": n_cold, "p50_ms": percentile(cold, 50), "p99_ms": percentile(cold, 99)},
        "cold_start": {"fork_ms": round(fork / n_cold, 3) if n_cold else None,
                       "init_ms": round(init / n_cold, 3) if n_cold else None,
                       "handler_ms": round(sum(cold) / n_cold, 3) if n_cold else None},
        "series": [{"t": round(since + i * step_s, 3), "invocations": len(d), "errors": e,
                    "cold": c, "p50_ms": percentile(d, 50), "p99_ms": percentile(d, 99)}
                   for i, (d, e, c) in enumerate(series)],
    }


def queues(conn: sqlite3.Connection) -> dict[str, Any]:
    """Per function: queued async events (count, oldest creation time) and dead letters."""
    return {
        "events": conn.execute("SELECT function, COUNT(*), MIN(created) FROM events "
                               "GROUP BY function").fetchall(),
        "dead": conn.execute("SELECT function, COUNT(*) FROM dead_letters "
                             "GROUP BY function").fetchall(),
    }
