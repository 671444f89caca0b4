"""`dayfly ls` and `dayfly rm`: the deployed functions."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.text import Text

from .client import Client, check_name, function_path, with_client
from .output import ago, console, json_option, lambda_epoch, note, print_json, seconds, table

WARM = ("idle", "busy")


def list_functions(client: Client) -> list[dict[str, Any]]:
    """Every function's $LATEST configuration, following ListFunctions' pages."""
    functions: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        page = client.json("GET", "/2015-03-31/functions/",
                           params={"Marker": marker} if marker else None)
        functions.extend(page.get("Functions") or [])
        marker = page.get("NextMarker")
        if not marker:
            return functions


def warm_count(client: Client, name: str) -> int:
    data = client.json("GET", f"/dayfly/v1/functions/{function_path(name)}/instances")
    return sum(1 for i in data.get("instances") or [] if i.get("state") in WARM)


def warm_counts(client: Client) -> dict[str, int]:
    """Warm instances of every function, in one request."""
    stats = client.json("GET", "/dayfly/v1/stats", params={"window": 60})
    return {name: f["instances"]["idle"] + f["instances"]["busy"]
            for name, f in (stats.get("functions") or {}).items()}


@click.command("ls")
@json_option
@with_client
def ls(client: Client, as_json: bool) -> None:
    """List the deployed functions and their warm instances."""
    functions = list_functions(client)
    if as_json:
        print_json({"Functions": functions})
        return
    if not functions:
        note("no functions yet; deploy one with [bold]dayfly deploy DIR[/]")
        return
    t = table("NAME", "RUNTIME", "HANDLER", ">MEMORY", ">TIMEOUT", "ISOLATION",
              "MODIFIED", ">WARM")
    warm = warm_counts(client)
    warnings = set()
    for fn in functions:
        name = fn["FunctionName"]
        d = fn.get("Dayfly") or {}
        isolation = Text(str(d.get("Isolation", "-")))
        if d.get("IsolationWarning"):
            warnings.add(d["IsolationWarning"])
            isolation = Text(f"{isolation} (weak)", style="bold red")
        t.add_row(name, fn.get("Runtime"), fn.get("Handler"), f"{fn.get('MemorySize')} MB",
                  seconds(fn.get("Timeout")), isolation,
                  ago(lambda_epoch(fn.get("LastModified", ""))),
                  str(warm[name] if name in warm else warm_count(client, name)))
    console().print(t)
    for warning in sorted(warnings):
        console().print(Text(f"(weak) = {warning}", style="bold red"))


@click.command("rm")
@click.argument("name", callback=check_name)
@click.option("--qualifier", "-q", metavar="VERSION",
              help="Delete only this numbered version.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@with_client
def rm(client: Client, name: str, qualifier: str | None, yes: bool) -> None:
    """Delete a function, or one of its versions."""
    what = f"version {qualifier} of {name}" if qualifier else \
        f"function {name} with all its versions and aliases"
    if not yes:
        click.confirm(f"Delete {what}?", abort=True, err=True)
    client.request("DELETE", f"/2015-03-31/functions/{function_path(name)}",
                   params={"Qualifier": qualifier} if qualifier else None)
    note(f"deleted {escape(what)}")
