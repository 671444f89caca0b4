"""Aggregates of invocation records over a time window, for the dashboard and `dayfly top`.

Everything is computed by SQLite over the covering index `invocations_stats` (the GIL is
released while it works) and comes back as a few rows. Counts and totals are exact;
percentiles are nearest-rank, exact up to SAMPLE records and over an even sample of the rows
(every k-th by sequence number) beyond.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from .db import floor_sql

SAMPLE = 4000  # durations sorted (by SQLite) for one query's percentiles
_RANGE = "FROM invocations INDEXED BY invocations_stats WHERE function = ? AND start >= ?"
NONE: tuple[float | None, float | None] = (None, None)
STATUSES = ("success", "error", "timeout", "crash")
# groups of durations, as integers (both engines sort and compare them alike): the whole window,
# warm (-2) and cold (-3) invocations, and the time series' points (0, 1, ...)
_ALL, _WARM, _COLD = -1, -2, -3
_BY_COLD = "-2 - cold"
_BUCKET = "(start - ?) / ?"  # floor_sql() of it is the point's number


def _r3(v: float | None) -> float | None:
    return round(v, 3) if v is not None else None


def _percentiles(conn: sqlite3.Connection, groups: list[tuple[str, tuple]], function: str,
                 since: float, n: int) -> dict[Any, tuple[float | None, float | None]]:
    """{group: (p50, p99)} of durations for each (SQL expression, its arguments) in `groups`,
    over one sample of the window. SQLite sorts and picks, so Python sees a row per group:
    fetching the durations would pass the GIL back and forth per row and slow the event loop."""
    if not n:
        return {}
    k = max(1, math.ceil(n / SAMPLE))
    where = "" if k == 1 else f" AND seq % {k} = 0"
    if len(groups) == 1:  # straight from the index
        union = f"SELECT {groups[0][0]} AS g, duration_ms AS d {_RANGE}{where}"
        args = (*groups[0][1], function, since)
    else:  # one pass over the index, then a sort per kind of group
        union = " UNION ALL ".join(f"SELECT {e} AS g, duration_ms AS d FROM s" for e, _ in groups)
        union = f"WITH s AS MATERIALIZED (SELECT start, cold, duration_ms {_RANGE}{where}) {union}"
        args = (function, since, *(a for _, group_args in groups for a in group_args))
    sql = ("SELECT g, MAX(CASE WHEN rn = (c * 50 + 99) / 100 THEN d END), "
           "MAX(CASE WHEN rn = (c * 99 + 99) / 100 THEN d END) FROM ("
           "SELECT g, d, ROW_NUMBER() OVER (PARTITION BY g ORDER BY d) AS rn, "
           f"COUNT(*) OVER (PARTITION BY g) AS c FROM ({union}) AS u) AS r GROUP BY g")
    return {g: (_r3(p50), _r3(p99)) for g, p50, p99 in conn.execute(sql, args)}


def _summary(n: int, errors: int, cold: int, last: float | None,
             pcts: tuple[float | None, float | None], window_s: float) -> dict[str, Any]:
    return {"invocations": n, "errors": errors, "cold": cold,
            "per_min": round(n / (window_s / 60), 3),
            "error_rate": round(errors / n, 4) if n else 0.0,
            "cold_share": round(cold / n, 4) if n else 0.0,
            "p50_ms": pcts[0], "p99_ms": pcts[1], "last": last}


def overview(conn: sqlite3.Connection, functions: list[str], since: float,
             window_s: float) -> dict[str, dict[str, Any]]:
    """Per function: count, errors, cold starts, rate, error rate, p50/p99, last invocation."""
    out = {}
    for name in functions:
        n, errors, cold, last = conn.execute(
            f"SELECT COUNT(*), COUNT(CASE WHEN status != 'success' THEN 1 END), "
            f"COUNT(CASE WHEN cold <> 0 THEN 1 END), MAX(start) {_RANGE}",
            (name, since)).fetchone()
        pcts = _percentiles(conn, [(str(_ALL), ())], name, since, n).get(_ALL, NONE)
        out[name] = _summary(n, int(errors), int(cold), last, pcts, window_s)
    return out


def function_stats(conn: sqlite3.Connection, function: str, since: float, window_s: float,
                   step_s: float) -> dict[str, Any]:
    """One function over a window: summary, cold vs warm, cold-start breakdown, time series."""
    buckets = max(1, math.ceil(window_s / step_s))
    counts: list[list[int]] = [[0, 0, 0] for _ in range(buckets)]  # invocations, errors, cold
    by_status: dict[str, int] = {}
    n = n_cold = 0
    fork = init = cold_handler = 0.0
    last = None
    # a range query per point: index order, no sort (a GROUP BY would sort the whole window)
    sql = ("SELECT COUNT(*), " +
           ", ".join(f"COUNT(CASE WHEN status = '{s}' THEN 1 END)" for s in STATUSES) +
           ", COUNT(CASE WHEN cold <> 0 THEN 1 END), " +
           ", ".join(f"COALESCE(SUM(CASE WHEN cold <> 0 THEN {c} END), 0.0)"
                     for c in ("fork_ms", "init_ms", "duration_ms")) +
           f", MAX(start) {_RANGE} AND start < ?")
    for i in range(buckets):
        lo = since + i * step_s
        hi = lo + step_s if i < buckets - 1 else float("inf")
        count, *per_status, cold, fork_t, init_t, dur_t, newest = conn.execute(
            sql, (function, lo, hi)).fetchone()
        if not count:
            continue
        known = dict(zip(STATUSES, map(int, per_status), strict=True))
        known["other"] = count - sum(known.values())
        for status, k in known.items():
            if k:
                by_status[status] = by_status.get(status, 0) + k
        counts[i] = [count, count - known["success"], int(cold)]
        n += count
        n_cold += int(cold)
        fork, init, cold_handler = fork + fork_t, init + init_t, cold_handler + dur_t
        last = newest if last is None or newest > last else last
    pcts = _percentiles(conn, [(str(_ALL), ()), (_BY_COLD, ()),
                               (floor_sql(conn, _BUCKET), (since, step_s))], function, since, n)
    warm, cold_p = pcts.get(_WARM, NONE), pcts.get(_COLD, NONE)
    summary = _summary(n, n - by_status.get("success", 0), n_cold, last,
                       pcts.get(_ALL, NONE), window_s)
    summary["by_status"] = by_status
    avg = (lambda total: round(total / n_cold, 3) if n_cold else None)  # noqa: E731
    return {
        "summary": summary,
        "warm": {"count": n - n_cold, "p50_ms": warm[0], "p99_ms": warm[1]},
        "cold": {"count": n_cold, "p50_ms": cold_p[0], "p99_ms": cold_p[1]},
        "cold_start": {"fork_ms": avg(fork), "init_ms": avg(init), "handler_ms": avg(cold_handler)},
        "series": [{"t": round(since + i * step_s, 3), "invocations": c[0], "errors": c[1],
                    "cold": c[2], "p50_ms": pcts.get(i, NONE)[0], "p99_ms": pcts.get(i, NONE)[1]}
                   for i, c in enumerate(counts)],
    }

