"""Render the measured rows as a markdown report."""

from __future__ import annotations

import statistics

from harness.measure import MISSING, Row, p50_p99

COLUMNS = [
    "server",
    "c=1 p50 (ms)",
    "c=1 p99 (ms)",
    "c=1 req/s",
    "c=32 req/s",
    "c=32 p99 (ms)",
    "errors (non-2xx + socket + function)",
    "cold start p50 / p99 (ms)",
    "PSS per warm instance (MiB)",
    "PSS of whole server tree (MiB)",
]
WARNING = "⚠"
LEGEND = [
    "Errors count wrk's `Non-2xx or 3xx responses`, its socket errors (connect, read, write, "
    "timeout) and responses with `X-Amz-Function-Error` (Lambda function errors, sent with "
    f"200) over both measured runs; a server with any is flagged {WARNING}.",
    "Cold start / floor: the floor is one fork and exec of `python3 -S -I -c pass` (the "
    "instances' interpreter, posix_spawn, until it exits), timed before each cold sample; the "
    "ratios are the cold p50 and p99 over the floor's p50 (issue 18: at most 1.3x and 3x).",
    "PSS per warm instance: mean `Pss:` of `/proc/PID/smaps_rollup` over the idle instances "
    "listed after driving the function at concurrency 8 (dayfly only).",
    "PSS of whole server tree: sum over the server process and all its descendants, read "
    "right after the c=32 run (for dayfly this includes every instance still warm then).",
]


def plural(count: int, noun: str) -> str:
    """Return COUNT with NOUN, pluralised with -es/-s when COUNT is not 1."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun}es" if noun.endswith("s") else f"{count} {noun}s"


def fmt_ms(value: float) -> str:
    """Format milliseconds with precision that suits their size."""
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt_errors(row: Row) -> str:
    """Describe the error counts of the measured wrk runs of ROW."""
    runs = {"c=1": row.latency, "c=32": row.throughput}
    measured = {label: run for label, run in runs.items() if run is not None}
    if not measured:
        return MISSING
    bad = [
        f"{label}: {run.non_2xx} + {run.socket_errors} + {run.function_errors}"
        for label, run in measured.items()
        if run.errors
    ]
    return f"{WARNING} " + "; ".join(bad) if bad else "0"


def fmt_cold(row: Row) -> str:
    """Format the cold-start percentiles of ROW, or its reason for having none."""
    if not row.cold_ms:
        return row.cold_note
    p50, p99 = p50_p99(row.cold_ms)
    out = f"{fmt_ms(p50)} / {fmt_ms(p99)} (n={len(row.cold_ms)})"
    if row.floor_ms:
        floor = statistics.median(row.floor_ms)
        out += f"; floor {fmt_ms(floor)}: {p50 / floor:.2f}x / {p99 / floor:.2f}x"
    return out


def flagged(row: Row) -> bool:
    """Tell whether ROW failed or saw errors under load."""
    runs = [run for run in (row.latency, row.throughput) if run is not None]
    return row.error is not None or any(run.errors for run in runs)


def cells(row: Row) -> list[str]:
    """Return the table cells of one row."""
    lat, thr = row.latency, row.throughput
    instance = row.instance_pss and f"{row.instance_pss[0]:.1f} (mean of {row.instance_pss[1]})"
    tree = row.tree_pss and f"{row.tree_pss[0]:.1f} ({plural(row.tree_pss[1], 'process')})"
    return [
        f"{row.name} {WARNING}" if flagged(row) else row.name,
        fmt_ms(lat.p50_ms) if lat else MISSING,
        fmt_ms(lat.p99_ms) if lat else MISSING,
        f"{lat.requests_per_sec:,.0f}" if lat else MISSING,
        f"{thr.requests_per_sec:,.0f}" if thr else MISSING,
        fmt_ms(thr.p99_ms) if thr else MISSING,
        fmt_errors(row),
        fmt_cold(row),
        instance or row.instance_note,
        tree or MISSING,
    ]


def table(rows: list[Row]) -> list[str]:
    """Return the markdown table lines."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return lines


def details(rows: list[Row]) -> list[str]:
    """Return the setup and the failure, if any, of every row."""
    lines = ["", "## Servers", ""]
    lines += [f"- **{row.name}**: {row.setup}" for row in rows]
    for row in rows:
        if row.error:
            lines += ["", f"## {row.name} failed", "", "```", row.error, "```"]
    return lines


def render(title: str, meta: list[str], rows: list[Row]) -> str:
    """Return the whole markdown report."""
    lines = [f"# {title}", "", *[f"- {item}" for item in meta], "", *table(rows), ""]
    lines += [f"- {item}" for item in LEGEND]
    lines += details(rows)
    return "\n".join(lines) + "\n"
