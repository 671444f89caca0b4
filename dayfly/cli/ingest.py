"""`dayfly ingest add-source/ls/rm`: external object stores (MinIO, S3-compatible) that post
their bucket events to dayfly; their buckets get triggers with `dayfly trigger add --source`."""

from __future__ import annotations

import click
from rich.markup import escape

from .client import Client, with_client
from .output import ago, console, json_option, note, print_json, table

PATH = "/dayfly/v1/ingest/sources"


@click.group()
def ingest() -> None:
    """External object stores whose bucket events trigger functions."""


@ingest.command("add-source")
@click.argument("name")
@click.option("--description", "-d", default="", help="A note to recognise the source by.")
@json_option
@with_client
def add_source(client: Client, name: str, description: str, as_json: bool) -> None:
    """Create source NAME; print its webhook URL and bearer token (shown this once)."""
    out = client.json("POST", PATH, json={"name": name, "description": description})
    if as_json:
        print_json(out)
        return
    url = f"{client.endpoint}{out['url']}"
    click.echo(f"url   = {url}\ntoken = {out['token']}")
    note(f"the token is shown only now. MinIO: mc admin config set ALIAS notify_webhook:{name} "
         f"endpoint={url} auth_token={out['token']}; then trigger functions with "
         f"[bold]dayfly trigger add FUNCTION --bucket B --source {escape(name)}[/]")


@ingest.command("ls")
@json_option
@with_client
def ls(client: Client, as_json: bool) -> None:
    """List the ingest sources (never their tokens)."""
    data = client.json("GET", PATH)
    if as_json:
        print_json(data)
        return
    if not data["sources"]:
        note("no ingest sources; add one with [bold]dayfly ingest add-source NAME[/]")
        return
    t = table("NAME", "CREATED", "~DESCRIPTION")
    for s in data["sources"]:
        t.add_row(escape(s["name"]), ago(s["created"]), escape(s["description"]))
    console().print(t)


@ingest.command("rm")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@with_client
def rm(client: Client, name: str, yes: bool) -> None:
    """Delete source NAME and its bucket triggers; its token stops working."""
    if not yes:
        click.confirm(f"Delete ingest source {name} and its bucket triggers?", abort=True,
                      err=True)
    client.request("DELETE", f"{PATH}/{name}")
    note(f"deleted ingest source {escape(name)}")
