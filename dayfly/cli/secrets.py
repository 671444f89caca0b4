"""`dayfly secrets set|ls|rm`: values kept by the platform, given only to functions that declare them."""

from __future__ import annotations

import sys

import click

from .client import Client, with_client
from .output import ago, console, json_option, note, print_json, table


@click.group()
def secrets() -> None:
    """Manage secrets (declare them in dayfly.toml: secrets = ["NAME"])."""


@secrets.command("set")
@click.argument("name")
@click.argument("value", required=False)
@with_client
def secrets_set(client: Client, name: str, value: str | None) -> None:
    """Set NAME to VALUE (or to standard input when VALUE is omitted, so it stays out of history)."""
    if value is None:
        if sys.stdin.isatty():
            value = click.prompt(f"value of {name}", hide_input=True)
        else:
            value = sys.stdin.read().rstrip("\n")
    client.request("PUT", f"/dayfly/v1/secrets/{name}", json={"value": value})
    note(f"secret {name} set; functions that declare it get the new value on their next start")


@secrets.command("ls")
@json_option
@with_client
def secrets_ls(client: Client, as_json: bool) -> None:
    """List secret names (never values) and the functions that declare them."""
    data = client.json("GET", "/dayfly/v1/secrets")
    if as_json:
        print_json(data)
        return
    t = table("name", "updated", "~declared by")
    for s in data["secrets"]:
        t.add_row(s["name"], ago(s["updated"]), ", ".join(s["functions"]) or "-")
    console().print(t)


@secrets.command("rm")
@click.argument("name")
@with_client
def secrets_rm(client: Client, name: str) -> None:
    """Delete a secret."""
    client.request("DELETE", f"/dayfly/v1/secrets/{name}")
    note(f"secret {name} deleted")
