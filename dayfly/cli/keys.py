"""`dayfly keys create|ls|rm`: access keys for the S3 endpoint (aws CLI, boto3)."""

from __future__ import annotations

import click
from rich.markup import escape

from .client import Client, with_client
from .output import ago, console, json_option, note, print_json, table


@click.group()
def keys() -> None:
    """Manage the access keys of the S3 endpoint."""


@keys.command("create")
@click.option("--description", "-d", default="", help="A note to recognise the key by.")
@json_option
@with_client
def keys_create(client: Client, description: str, as_json: bool) -> None:
    """Create an access key; its secret is shown this once."""
    key = client.json("POST", "/dayfly/v1/keys", json={"description": description})
    if as_json:
        print_json(key)
        return
    click.echo(f"aws_access_key_id = {key['id']}\naws_secret_access_key = {key['secret']}")
    note("the secret is shown only now; keep it (e.g. in an aws credentials file)")


@keys.command("ls")
@json_option
@with_client
def keys_ls(client: Client, as_json: bool) -> None:
    """List the access keys (never their secrets)."""
    data = client.json("GET", "/dayfly/v1/keys")
    if as_json:
        print_json(data)
        return
    if not data.get("keys"):
        note("no access keys; create one with [bold]dayfly keys create[/]")
        return
    t = table("ID", "CREATED", "~DESCRIPTION")
    for k in data["keys"]:
        t.add_row(k["id"], ago(k.get("created")), escape(k.get("description") or ""))
    console().print(t)


@keys.command("rm")
@click.argument("key_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@with_client
def keys_rm(client: Client, key_id: str, yes: bool) -> None:
    """Delete access key KEY_ID; requests signed with it are refused from then on."""
    if not yes:
        click.confirm(f"Delete access key {key_id}?", abort=True, err=True)
    client.request("DELETE", f"/dayfly/v1/keys/{key_id}")
    note(f"deleted access key {escape(key_id)}")
