"""`dayfly versions` and `dayfly publish`: a function's frozen, numbered versions."""

from __future__ import annotations

import click
from rich.markup import escape

from .client import Client, check_name, function_path, with_client
from .output import ago, console, json_option, lambda_epoch, note, print_json, seconds, table


@click.command()
@click.argument("name", callback=check_name)
@json_option
@with_client
def versions(client: Client, name: str, as_json: bool) -> None:
    """List a function's versions ($LATEST first)."""
    data = client.json("GET", f"/2015-03-31/functions/{function_path(name)}/versions")
    if as_json:
        print_json(data)
        return
    t = table("VERSION", "HANDLER", ">MEMORY", ">TIMEOUT", "CODE SHA256", "MODIFIED",
              "~DESCRIPTION")
    for v in data.get("Versions") or []:
        t.add_row(v.get("Version"), v.get("Handler"), f"{v.get('MemorySize')} MB",
                  seconds(v.get("Timeout")), (v.get("CodeSha256") or "")[:12],
                  ago(lambda_epoch(v.get("LastModified", ""))), escape(v.get("Description") or ""))
    console().print(t)


@click.command()
@click.argument("name", callback=check_name)
@click.option("--description", "-d", metavar="TEXT", help="What this version is.")
@json_option
@with_client
def publish(client: Client, name: str, description: str | None, as_json: bool) -> None:
    """Publish $LATEST as a new, frozen, numbered version."""
    path = f"/2015-03-31/functions/{function_path(name)}/versions"
    before = {v.get("Version") for v in client.json("GET", path).get("Versions") or []}
    cfg = client.json("POST", path, json={"Description": description} if description else {})
    if as_json:
        print_json(cfg)
        return
    version = cfg.get("Version")
    if version in before:
        note(f"nothing changed since version {escape(str(version))}; no new version published")
    else:
        note(f"published {name} version [bold]{escape(str(version))}[/]")
    click.echo(version)
