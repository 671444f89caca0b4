"""`dayfly instances` and `dayfly scale-to-zero`: the running sandboxes of a function."""

from __future__ import annotations

import click
from rich.text import Text

from .client import Client, check_name, function_path, with_client
from .output import console, json_option, note, print_json, table

STATE_STYLE = {"idle": "green", "busy": "yellow", "starting": "cyan"}


def _path(name: str) -> str:
    return f"/dayfly/v1/functions/{function_path(name)}/instances"


@click.command()
@click.argument("name", callback=check_name)
@json_option
@with_client
def instances(client: Client, name: str, as_json: bool) -> None:
    """List a function's instances (idle, busy or starting)."""
    data = client.json("GET", _path(name))
    if as_json:
        print_json(data)
        return
    rows = data.get("instances") or []
    if not rows:
        note(f"{name} has no instances (the next invocation starts one)")
        return
    t = table("ID", ">PID", "STATE", "VERSION", ">INVOCATIONS", ">IDLE", ">PSS")
    for i in rows:
        state = str(i.get("state"))
        idle = i.get("idle_s")
        pss = i.get("pss_kb")
        t.add_row(i.get("id") or "-", str(i.get("pid") or "-"),
                  Text(state, STATE_STYLE.get(state, "")),
                  i.get("version"), str(i.get("invocations", "-")),
                  "-" if idle is None else f"{idle:.1f}s",
                  "-" if pss is None else f"{pss / 1024:.1f} MiB")
    console().print(t)


@click.command("scale-to-zero")
@click.argument("name", callback=check_name)
@with_client
def scale_to_zero(client: Client, name: str) -> None:
    """Stop every instance of a function now (it stays deployed)."""
    running = client.json("GET", _path(name)).get("instances") or []
    client.request("DELETE", _path(name))
    note(f"stopped {len(running)} instance{'s' if len(running) != 1 else ''} of {name}")
