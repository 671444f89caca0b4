"""How commands print: rich consoles and tables for people, `--json` for machines."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr); wide when piped, so tables do not wrap mid-id."""
    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(stderr=stderr, highlight=False, width=200)
    return c


def table(*columns: str) -> Table:
    """A plain table of unwrapped cells; a leading '>' right-aligns a column (numbers), a
    leading '~' lets it wrap (free text)."""
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in columns:
        if col.startswith(">"):
            t.add_column(col[1:], justify="right", no_wrap=True)
        elif col.startswith("~"):
            t.add_column(col[1:], overflow="fold")
        else:
            t.add_column(col, no_wrap=True, overflow="ellipsis")
    return t


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """`--json`: print the API's JSON instead of a table."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the raw API JSON instead of a table.")(f)


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A line for the person at the terminal (on stderr, so stdout stays clean for pipes)."""
    console(stderr=True).print(text)


def lambda_epoch(stamp: str) -> float | None:
    """Lambda's LastModified (2026-11-28T01:00:00.000+0000) as epoch seconds."""
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except (TypeError, ValueError):
        return None


def ago(epoch: float | None) -> str:
    """'12s ago', '5m ago', '3h ago', then a local date."""
    if epoch is None:
        return "-"
    age = time.time() - epoch
    if age < 0:
        return local_time(epoch)
    for limit, unit, size in ((120, "s", 1), (7200, "m", 60), (172800, "h", 3600)):
        if age < limit:
            return f"{int(age // size)}{unit} ago"
    return local_time(epoch)


def local_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def short_time(epoch: float) -> str:
    """HH:MM:SS today, else MM-DD HH:MM:SS (local time)."""
    same_day = time.localtime(epoch)[:3] == time.localtime()[:3]
    return time.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M:%S", time.localtime(epoch))


def size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def seconds(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}s"
