"""`dayfly invocations NAME`: the records of recent invocations (status, timings, memory)."""

from __future__ import annotations

import click
from rich.text import Text

from .client import Client, check_name, function_path, with_client
from .output import console, json_option, note, print_json, short_time, table

STATUSES = ("success", "error", "timeout", "crash")
STATUS_STYLE = {"success": "green", "error": "red", "timeout": "red", "crash": "bold red"}


@click.command()
@click.argument("name", callback=check_name)
@click.option("--status", type=click.Choice(STATUSES), help="Only invocations with this status.")
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="How many (newest first).")
@json_option
@with_client
def invocations(client: Client, name: str, status: str | None, limit: int,
                as_json: bool) -> None:
    """List a function's recent invocations, newest first."""
    params: dict[str, str | int] = {"limit": limit}
    if status:
        params["status"] = status
    data = client.json("GET", f"/dayfly/v1/functions/{function_path(name)}/invocations",
                       params=params)
    if as_json:
        print_json(data)
        return
    rows = data.get("invocations") or []
    if not rows:
        note(f"no {status + ' ' if status else ''}invocations of {name} yet")
        return
    nodes = any(r.get("node") for r in rows)  # a cluster's records name the node that ran them
    t = table("REQUEST ID", "START", "VERSION", "STATUS", "COLD", ">DURATION", ">INIT",
              ">MEMORY", *(("NODE",) if nodes else ()))
    t.columns[0].min_width = 36  # a request id is only useful whole
    for r in rows:
        st = str(r.get("status"))
        t.add_row(r.get("request_id"), short_time(r["start"]) if r.get("start") else "-",
                  r.get("version"), Text(st, STATUS_STYLE.get(st, "")),
                  "cold" if r.get("cold") else "", f"{r.get('duration_ms') or 0:.2f} ms",
                  f"{r['init_ms']:.2f} ms" if r.get("cold") and r.get("init_ms") else "-",
                  f"{max(1, (r.get('max_rss_kb') or 0) // 1024)} MB",
                  *((str(r.get("node") or "-"),) if nodes else ()))
    console().print(t)
