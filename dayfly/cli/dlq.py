"""`dayfly dlq ls|show|redrive|purge`: events that exhausted their retries or their age."""

from __future__ import annotations

import click
from rich.markup import escape

from .client import Client, check_name, function_path, with_client
from .output import ago, console, json_option, note, print_json, table


@click.group()
def dlq() -> None:
    """Inspect and replay a function's dead-letter queue."""


@dlq.command("ls")
@click.argument("name", callback=check_name)
@click.option("-n", "limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option
@with_client
def dlq_ls(client: Client, name: str, limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    data = client.json("GET", f"/dayfly/v1/functions/{function_path(name)}/dlq",
                       params={"limit": limit})
    if as_json:
        print_json(data)
        return
    t = table("event id", "trigger", ">attempts", ">throttled", "failed", "~error")
    for d in data["dead_letters"]:
        t.add_row(d["id"], d["trigger"], str(d["attempts"]), str(d.get("throttles", 0)),
                  ago(d["failed"]),
                  escape(d["error"].splitlines()[0][:160] if d["error"] else ""))
    console().print(t)
    if not data["dead_letters"]:
        note(f"no dead letters for {name}")


@dlq.command("show")
@click.argument("name", callback=check_name)
@click.argument("event_id")
@with_client
def dlq_show(client: Client, name: str, event_id: str) -> None:
    """One dead letter in full: its payload, error and chain of causes."""
    print_json(client.json("GET", f"/dayfly/v1/functions/{function_path(name)}/dlq/{event_id}"))


@dlq.command("redrive")
@click.argument("name", callback=check_name)
@click.argument("event_ids", nargs=-1)
@with_client
def dlq_redrive(client: Client, name: str, event_ids: tuple[str, ...]) -> None:
    """Put dead letters (all, or the given ids) back in the queue with fresh retries."""
    body = {"ids": list(event_ids)} if event_ids else {}
    n = client.json("POST", f"/dayfly/v1/functions/{function_path(name)}/dlq/redrive",
                    json=body)["redriven"]
    note(f"{n} event(s) of {name} back in the queue")


@dlq.command("purge")
@click.argument("name", callback=check_name)
@click.argument("event_ids", nargs=-1)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@with_client
def dlq_purge(client: Client, name: str, event_ids: tuple[str, ...], yes: bool) -> None:
    """Delete dead letters (all, or the given ids) for good."""
    what = f"{len(event_ids)} dead letter(s)" if event_ids else "every dead letter"
    if not yes:
        click.confirm(f"delete {what} of {name}?", abort=True)
    body = {"ids": list(event_ids)} if event_ids else {}
    n = client.json("DELETE", f"/dayfly/v1/functions/{function_path(name)}/dlq",
                    json=body)["purged"]
    note(f"{n} dead letter(s) of {name} deleted")
