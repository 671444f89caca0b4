"""`dayfly alias ls|set|rm`: names that point at a version, optionally splitting traffic."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from .client import Client, check_name, function_path, with_client
from .output import console, json_option, note, print_json, table


def _weight(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """VERSION=WEIGHT pairs as AdditionalVersionWeights."""
    weights: dict[str, float] = {}
    for item in values:
        version, sep, raw = item.partition("=")
        try:
            weight = float(raw)
        except ValueError:
            weight = -1.0
        if not sep or not version.strip().isdigit() or not 0 <= weight <= 1:
            raise click.BadParameter(f"{item!r} must look like VERSION=WEIGHT with WEIGHT from "
                                     "0 to 1, e.g. 2=0.1")
        weights[version.strip()] = weight
    return weights


@click.group()
def alias() -> None:
    """Manage a function's aliases: names that point at versions."""


def _path(name: str, alias_name: str | None = None) -> str:
    base = f"/2015-03-31/functions/{function_path(name)}/aliases"
    return f"{base}/{function_path(alias_name)}" if alias_name else base


@alias.command("ls")
@click.argument("name", callback=check_name)
@json_option
@with_client
def alias_ls(client: Client, name: str, as_json: bool) -> None:
    """List the aliases of function NAME."""
    data = client.json("GET", _path(name))
    if as_json:
        print_json(data)
        return
    if not data.get("Aliases"):
        note(f"{name} has no aliases; add one with [bold]dayfly alias set {name} ALIAS "
             "VERSION[/]")
        return
    t = table("ALIAS", "VERSION", "ALSO ROUTES TO", "~DESCRIPTION")
    for a in data["Aliases"]:
        weights = (a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        t.add_row(a.get("Name"), a.get("FunctionVersion"),
                  ", ".join(f"{v} ({w:.0%})" for v, w in weights.items()) or "-",
                  escape(a.get("Description") or ""))
    console().print(t)


@alias.command("set")
@click.argument("name", callback=check_name)
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version")
@click.option("--description", "-d", metavar="TEXT", help="What the alias is for.")
@click.option("--weight", "-w", "weights", multiple=True, callback=_weight,
              metavar="VERSION=WEIGHT",
              help="Also send this share of traffic to VERSION (repeatable), e.g. 2=0.1.")
@json_option
@with_client
def alias_set(client: Client, name: str, alias_name: str, version: str,
              description: str | None, weights: dict[str, float], as_json: bool) -> None:
    """Point ALIAS at VERSION, creating the alias if needed.

    The traffic split is replaced by the --weight options given (none: no split).
    """
    body: dict[str, Any] = {"FunctionVersion": version}
    if description is not None:
        body["Description"] = description
    exists = client.request("GET", _path(name, alias_name), allow=(404,)).status_code != 404
    if exists:
        body["RoutingConfig"] = {"AdditionalVersionWeights": weights}
        result = client.json("PUT", _path(name, alias_name), json=body)
    else:
        body["Name"] = alias_name
        if weights:
            body["RoutingConfig"] = {"AdditionalVersionWeights": weights}
        result = client.json("POST", _path(name), json=body)
    if as_json:
        print_json(result)
        return
    split = "".join(f", {w:.0%} to version {v}" for v, w in weights.items())
    note(f"{'updated' if exists else 'created'} alias {escape(alias_name)} of {name}: "
         f"version {escape(result.get('FunctionVersion', version))}{split}")


@alias.command("rm")
@click.argument("name", callback=check_name)
@click.argument("alias_name", metavar="ALIAS")
@with_client
def alias_rm(client: Client, name: str, alias_name: str) -> None:
    """Delete ALIAS of function NAME (its versions stay)."""
    client.request("DELETE", _path(name, alias_name))
    note(f"deleted alias {escape(alias_name)} of {name}")
