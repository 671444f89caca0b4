"""`dayfly keys create|ls|rm`: access keys for the S3 endpoint (aws CLI, boto3)."""

from __future__ import annotations

import re

import click
from rich.markup import escape

from . import aws_config
from .client import Client, with_client
from .output import ago, console, json_option, note, print_json, table

PROFILE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@click.group()
def keys() -> None:
    """Manage the access keys of the S3 endpoint."""


@keys.command("create")
@click.option("--description", "-d", default="", help="A note to recognise the key by.")
@click.option("--user", "-u", default="dayfly", show_default=True,
              help="The user the key belongs to: it acts on that user's buckets (and what "
                   "others' ACLs and policies grant the user).")
@click.option("--env", "as_env", is_flag=True,
              help='Print AWS_* variables for the shell: eval "$(dayfly keys create --env)".')
@click.option("--profile", metavar="NAME",
              help="Write the key, this endpoint and the region as profile NAME in the aws "
                   "CLI's files (~/.aws/credentials and ~/.aws/config).")
@json_option
@with_client
def keys_create(client: Client, description: str, user: str, as_env: bool,
                profile: str | None, as_json: bool) -> None:
    """Create an access key; its secret is shown this once (or goes straight to --env or
    --profile, ready for the aws CLI and boto3)."""
    if as_env and profile:
        raise click.UsageError("choose one of --env and --profile")
    if profile is not None and not PROFILE_RE.match(profile):
        raise click.BadParameter("letters, digits, '.', '-' or '_'", param_hint="--profile")
    key = client.json("POST", "/dayfly/v1/keys",
                      json={"description": description or (f"aws profile {profile}"
                                                           if profile else ""),
                            "user": user})
    if as_json:
        print_json(key)
        return
    if as_env:
        click.echo(aws_config.env_block(key, client.endpoint))
        return
    if profile:
        creds, config = aws_config.write_profile(profile, key, client.endpoint)
        note(f"profile [bold]{escape(profile)}[/] written to {escape(str(creds))} and "
             f"{escape(str(config))}: try `aws --profile {escape(profile)} s3 ls`, or "
             f"boto3.Session(profile_name={profile!r}).client('s3')")
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
    t = table("ID", "USER", "CREATED", "~DESCRIPTION")
    for k in data["keys"]:
        t.add_row(k["id"], escape(k.get("user", "")), ago(k.get("created")),
                  escape(k.get("description") or ""))
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
