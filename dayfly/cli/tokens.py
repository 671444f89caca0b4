"""`dayfly token create|ls|revoke`: API tokens for the management API and private functions."""

from __future__ import annotations

import click
from rich.markup import escape

from .client import Client, with_client
from .output import ago, console, json_option, note, print_json, table


@click.group("token")
def token() -> None:
    """Manage API tokens (required when dayfly is not bound to loopback, or once one exists)."""


@token.command("create")
@click.option("--description", "-d", default="", help="A note to recognise the token by.")
@json_option
@with_client
def token_create(client: Client, description: str, as_json: bool) -> None:
    """Create an API token; its value is shown this once."""
    tok = client.json("POST", "/dayfly/v1/tokens", json={"description": description})
    if as_json:
        print_json(tok)
        return
    click.echo(tok["token"])
    note(f"token {tok['id']}: shown only now. Use it as `export DAYFLY_TOKEN=...` (CLI), "
         "`Authorization: Bearer ...` (HTTP), or as the access key id of boto3/aws CLI. "
         "While any token exists, every request needs one.")


@token.command("ls")
@json_option
@with_client
def token_ls(client: Client, as_json: bool) -> None:
    """List the API tokens (never their values)."""
    data = client.json("GET", "/dayfly/v1/tokens")
    if as_json:
        print_json(data)
        return
    if not data.get("tokens"):
        note("no API tokens; create one with [bold]dayfly token create[/]")
        return
    t = table("ID", "CREATED", "~DESCRIPTION")
    for k in data["tokens"]:
        t.add_row(k["id"], ago(k.get("created")), escape(k.get("description") or ""))
    console().print(t)


@token.command("revoke")
@click.argument("token_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@with_client
def token_revoke(client: Client, token_id: str, yes: bool) -> None:
    """Revoke token TOKEN_ID; requests carrying it are refused from then on."""
    if not yes:
        click.confirm(f"Revoke API token {token_id}?", abort=True, err=True)
    client.request("DELETE", f"/dayfly/v1/tokens/{token_id}")
    note(f"revoked API token {escape(token_id)}")
