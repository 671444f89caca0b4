"""`dayfly builtins` (the prebuilt functions and their options) and the pieces of
`dayfly deploy builtin:NAME`: reading `--config`/`--config-file`, wiring `--trigger`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.text import Text

from .bucket_triggers import PATH as BUCKET_TRIGGERS
from .client import Client, CliError, with_client
from .output import console, json_option, note, print_json, table

PREFIX = "builtin:"


@click.command("builtins")
@click.argument("name", required=False)
@json_option
@with_client
def builtins(client: Client, name: str | None, as_json: bool) -> None:
    """List the prebuilt functions (`dayfly deploy builtin:NAME`) and their options."""
    found = client.json("GET", "/dayfly/v1/builtins")["builtins"]
    if name is not None:
        found = [b for b in found if b["name"] == name.removeprefix(PREFIX)]
        if not found:
            raise CliError(f"no builtin named {name!r}", "`dayfly builtins` lists them")
    if as_json:
        print_json({"builtins": found})
        return
    out = console()
    for b in found:
        out.print(Text.assemble((PREFIX + b["name"], "bold"), "  ", b["summary"]))
        out.print(Text("events: " + b["events"], style="dim"))
        t = table("option", "type", "default", "~description")
        for o in b["options"]:
            default = "(required)" if o["required"] else _show(o["default"])
            t.add_row(o["name"], o["type"], default, o["help"])
        out.print(t)
        out.print()


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_config(pairs: tuple[str, ...], path: Path | None) -> dict[str, Any]:
    """Options from a TOML file, then each KEY=VALUE (a TOML value, or else plain text)."""
    config: dict[str, Any] = {}
    if path is not None:
        try:
            config = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise click.BadParameter(f"{path}: {exc}", param_hint="--config-file") from None
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--config")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        config[key.strip()] = value
    return config


def builtin_request(target: str, name: str | None, pairs: tuple[str, ...],
                    config_file: Path | None, publish: bool,
                    trigger: bool = False) -> tuple[str, str, dict[str, Any]]:
    """(function name, API path, JSON body) of a `dayfly deploy builtin:NAME`; with trigger,
    the server checks the source bucket before it stores anything."""
    builtin = target.removeprefix(PREFIX)
    function = name or builtin
    body = {"name": function, "config": read_config(pairs, config_file), "publish": publish,
            "trigger": trigger}
    return function, f"/dayfly/v1/builtins/{builtin}/deploy", body


def wire_trigger(client: Client, function: str, info: dict[str, Any] | None) -> None:
    """`--trigger`: the builtin's source bucket (with its prefix/suffix) invokes it on creates;
    a redeploy replaces the earlier wiring (its id is `builtin-FUNCTION`)."""
    trigger = (info or {}).get("trigger")
    if not trigger:
        raise CliError(f"{function} is deployed, but builtin:{(info or {}).get('name')} has "
                       "no bucket source to wire",
                       f"wire it with `dayfly trigger add {function} --bucket B` (or --table)")
    rule_id = f"builtin-{function}"
    client.request("DELETE", f"{BUCKET_TRIGGERS}/{rule_id}", params={"bucket": trigger["bucket"]},
                   allow=(404,))
    client.json("POST", BUCKET_TRIGGERS, json={
        "function": function, "bucket": trigger["bucket"], "events": "created",
        "prefix": trigger["prefix"], "suffix": trigger["suffix"], "id": rule_id})
    filters = " ".join(f"{k} {escape(repr(trigger[k]))}" for k in ("prefix", "suffix")
                       if trigger[k])
    note(f"bucket trigger [bold]{rule_id}[/]: objects created in {escape(trigger['bucket'])}"
         f"{' (' + filters + ')' if filters else ''} invoke {escape(function)}")
