"""`dayfly nodes`: the live nodes of the cluster (one node shows itself)."""

from __future__ import annotations

import click
from rich.text import Text

from .client import Client, with_client
from .output import console, json_option, note, print_json, table


def _warm(warm: dict[str, int]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in sorted(warm.items())) or "-"


@click.command()
@json_option
@with_client
def nodes(client: Client, as_json: bool) -> None:
    """List the cluster's live nodes: address, tiers, load, warm instances, last heartbeat."""
    data = client.json("GET", "/dayfly/v1/nodes")
    if as_json:
        print_json(data)
        return
    rows = data.get("nodes") or []
    t = table("ID", "ADDRESS", "TIERS", ">LOAD", "WARM", ">HEARTBEAT", "VERSION")
    for n in rows:
        ident = Text(str(n.get("id")), "bold" if n.get("self") else "")
        if n.get("self"):
            ident.append(" (this)", "dim")
        age = float(n.get("age_s") or 0.0)
        t.add_row(ident, str(n.get("address", "-")), ", ".join(n.get("tiers") or []) or "-",
                  f"{n.get('running', 0)}/{n.get('capacity', 0)}", _warm(n.get("warm") or {}),
                  f"{age:.1f}s ago", str(n.get("version") or "-"))
    console().print(t)
    cluster = data.get("cluster")
    note(f"{len(rows)} node{'s' if len(rows) != 1 else ''}"
         + (f" in cluster {cluster}" if cluster else " (single node)"))
