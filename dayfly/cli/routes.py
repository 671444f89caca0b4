"""`dayfly routes`: every HTTP route and function URL the node serves."""

from __future__ import annotations

import click
from rich.markup import escape

from .client import Client, with_client
from .output import console, json_option, note, print_json, table


def _limits(r: dict) -> str:
    parts = []
    if r.get("max_body") is not None and r["max_body"] < 6 * 1024 * 1024:
        parts.append(f"body ≤ {r['max_body']} B")
    rate = r.get("rate_limit")
    if rate:
        parts.append(f"{rate['rps']:g}/s (burst {rate['burst']:g}) per node")
    return ", ".join(parts) or "-"


@click.command("routes")
@click.option("--function", "-f", "function", default=None, help="Only this function's.")
@json_option
@with_client
def routes(client: Client, function: str | None, as_json: bool) -> None:
    """List HTTP routes (dayfly.toml's [http]) and function URLs."""
    data = client.json("GET", "/dayfly/v1/routes",
                       params={"function": function} if function else None)
    if as_json:
        print_json(data)
        return
    if not data["routes"] and not data["urls"]:
        note("no routes yet; add an [http] table with routes to a function's dayfly.toml, or "
             "`aws lambda create-function-url-config`")
        return
    out = console()
    if data["routes"]:
        t = table("ROUTE", "FUNCTION", "AUTH", "PAYLOAD", "CORS", "~LIMITS")
        for r in data["routes"]:
            t.add_row(escape(r["route"]), escape(r["function"]), r["auth"],
                      r["payload_version"], "yes" if r["cors"] else "-", _limits(r))
        out.print(t)
    if data["urls"]:
        if data["routes"]:
            out.print()
        t = table("FUNCTION URL", "FUNCTION", "AUTH", "CORS", "PATH URL")
        for u in data["urls"]:
            fn = u["function"] + (f":{u['qualifier']}" if u.get("qualifier") else "")
            t.add_row(escape(u["url"]), escape(fn), u["auth_type"],
                      "yes" if u["cors"] else "-", escape(u["path_url"]))
        out.print(t)
    for c in data.get("conflicts") or []:
        note(f"[yellow]not served[/]: {escape(c)}")
