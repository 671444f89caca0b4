"""`dayfly top`: a live view of every function's invocations and instances (Ctrl-C stops)."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.text import Text

from .client import Client, with_client
from .output import ago, console, json_option, print_json, table


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} ms" if v < 10 else f"{v:.0f} ms"


def render(stats: dict[str, Any], window: int) -> Group:
    """One frame: platform health, then functions, busiest first."""
    p = stats["platform"]
    unhealthy = len(p["sources"]["unhealthy"])
    head = Text.assemble(
        ("dayfly top", "bold"), f"  {time.strftime('%H:%M:%S')}  last {window}s  ",
        f"functions {p['functions']}  queue {p['queue_depth']}  ",
        (f"dead letters {p['dead_letters']}  ", "red" if p["dead_letters"] else ""),
        (f"unhealthy sources {unhealthy}", "red" if unhealthy else ""))
    t = table("FUNCTION", ">IDLE", ">BUSY", ">START", ">INV/MIN", ">ERR %", ">P50", ">P99",
              ">COLD %", "LAST")
    rows = sorted(stats["functions"].items(),
                  key=lambda kv: (-kv[1]["invocations"], -sum(kv[1]["instances"].values()), kv[0]))
    for name, f in rows:
        inst = f["instances"]
        err = f"{f['error_rate'] * 100:.1f}"
        t.add_row(name, str(inst["idle"]), str(inst["busy"]), str(inst["starting"]),
                  f"{f['per_min']:.1f}", f"[red]{err}[/]" if f["errors"] else err,
                  _ms(f["p50_ms"]), _ms(f["p99_ms"]), f"{f['cold_share'] * 100:.0f}",
                  ago(f["last"]))
    return Group(head, Text(""), t if rows else Text("no functions yet", style="dim"))


@click.command()
@click.option("--window", default=60, show_default=True, type=click.IntRange(60, 86400),
              help="Seconds of history the rates and percentiles cover.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 60),
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@json_option
@with_client
def top(client: Client, window: int, interval: float, once: bool, as_json: bool) -> None:
    """Live view of invocations and instances, refreshed until Ctrl-C."""
    path = f"/dayfly/v1/stats?window={window}"
    if as_json:
        print_json(client.json("GET", path))
        return
    out = console()
    if once or not out.is_terminal:  # a live view needs a terminal: a pipe gets one frame
        out.print(render(client.json("GET", path), window))
        if not once:
            click.echo("(one frame: the output is not a terminal; --once says so explicitly, "
                       "--json gives the numbers)", err=True)
        return
    try:
        with Live(render(client.json("GET", path), window), console=out, auto_refresh=False,
                  screen=out.is_terminal) as live:
            while True:
                time.sleep(interval)
                live.update(render(client.json("GET", path), window), refresh=True)
    except KeyboardInterrupt:
        return
