"""`dayfly trigger add/ls/rm`: table change streams and schedules that invoke a function."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from .bucket_triggers import (
    EVENTS,
    add_bucket_trigger,
    bucket_trigger_row,
    bucket_triggers,
    remove_bucket_trigger,
)
from .client import Client, CliError, check_name, with_client
from .output import console, json_option, note, print_json, table

ESM = "/2015-03-31/event-source-mappings"
SCHEDULES = "/dayfly/v1/schedules"
VIEWS = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")


def _mapping_body(function: str, source: str, opts: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"FunctionName": function, "EventSourceArn": source,
                            "Enabled": not opts["disabled"]}
    for key, opt in (("StreamViewType", "view"), ("BatchSize", "batch_size"),
                     ("MaximumBatchingWindowInSeconds", "batch_window"),
                     ("StartingPosition", "starting_position"),
                     ("MaximumRetryAttempts", "retries"), ("MaximumRecordAgeInSeconds", "max_age")):
        if opts[opt] is not None:
            body[key] = opts[opt]
    if opts["bisect"]:
        body["BisectBatchOnFunctionError"] = True
    if opts["report_failures"]:
        body["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
    if opts["on_failure"]:
        body["DestinationConfig"] = {"OnFailure": {"Destination": opts["on_failure"]}}
    return body


@click.group("trigger")
def trigger() -> None:
    """Table change streams and schedules that invoke a function."""


@trigger.command("add")
@click.argument("function", callback=check_name)
@click.option("--table", "source", metavar="URL",
              help="A table to stream: sqlite:///abs/path/app.db#table or "
                   "postgresql://user@host:5432/db#schema.table")
@click.option("--cron", metavar="EXPR", help='A cron schedule: "*/5 * * * *" or '
                                             '"cron(0 12 * * ? *)".')
@click.option("--rate", metavar="EXPR", help='A rate schedule: "5 minutes" or "rate(5 minutes)".')
@click.option("--tz", default="UTC", show_default=True, help="Time zone of a --cron schedule.")
@click.option("--missed", type=click.Choice(["skip", "catch-up"]), default="skip",
              show_default=True, help="What a schedule does about fires missed while down.")
@click.option("--name", help="Name of a schedule (default: FUNCTION-xxxxxxxx).")
@click.option("--view", type=click.Choice(VIEWS), help="StreamViewType [NEW_AND_OLD_IMAGES].")
@click.option("--batch-size", type=click.IntRange(1, 10000), help="Records per batch [100].")
@click.option("--batch-window", type=click.IntRange(0, 300), metavar="SECONDS",
              help="Wait up to this long to fill a batch [0].")
@click.option("--starting-position", type=click.Choice(["LATEST", "TRIM_HORIZON"]))
@click.option("--retries", type=click.IntRange(-1, 10000), help="Retries of a failing batch "
                                                                "(-1: until it succeeds) [-1].")
@click.option("--max-age", type=int, metavar="SECONDS", help="Give up on older records (-1 or "
                                                             "60-604800) [-1].")
@click.option("--bisect", is_flag=True, help="Split a failing batch in two before retrying.")
@click.option("--report-failures", is_flag=True, help="The function returns batchItemFailures.")
@click.option("--on-failure", metavar="FUNCTION", help="Function that receives batches given up.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@click.option("--bucket", help="A bucket whose object events invoke FUNCTION.")
@click.option("--events", type=click.Choice(EVENTS), default="created", show_default=True,
              help="Which object events of --bucket.")
@click.option("--prefix", default="", help="Only keys of --bucket starting with this.")
@click.option("--suffix", default="", help="Only keys of --bucket ending with this (.jpg).")
@click.option("--source", "store", default="local", show_default=True,
              help="Where --bucket lives: the built-in store, or an ingest source.")
@json_option
@with_client
def add(client: Client, function: str, source: str | None, cron: str | None, rate: str | None,
        tz: str, missed: str, name: str | None, as_json: bool, bucket: str | None, events: str,
        prefix: str, suffix: str, store: str, **opts: Any) -> None:
    """Invoke FUNCTION on every change of a table, on a schedule, or on a bucket's objects."""
    if sum(x is not None for x in (source, cron, rate, bucket)) != 1:
        raise click.UsageError("give exactly one of --table, --cron or --rate (or --bucket)")
    if bucket is not None:
        add_bucket_trigger(client, function, bucket, events, prefix, suffix, store, as_json)
        return
    if source is not None:
        out = client.json("POST", ESM, json=_mapping_body(function, source, opts))
        if as_json:
            print_json(out)
            return
        note(f"table trigger [bold]{out['UUID']}[/]: {escape(out['Dayfly']['Table'])} -> "
             f"{escape(function)} ({out['Dayfly']['StreamViewType']}, batches of "
             f"{out['BatchSize']}, from {out['StartingPosition']})")
        return
    expr = cron if cron is not None else rate
    assert expr is not None
    if rate is not None and not rate.strip().startswith("rate("):
        expr = f"rate({rate.strip()})"
    body = {"FunctionName": function, "ScheduleExpression": expr, "Timezone": tz,
            "MissedFirePolicy": missed, "State": "DISABLED" if opts["disabled"] else "ENABLED"}
    if name:
        body["Name"] = name
    out = client.json("POST", SCHEDULES, json=body)
    if as_json:
        print_json(out)
        return
    note(f"schedule [bold]{out['Id']}[/] ({escape(out['Name'])}): {escape(expr)} "
         f"{out['Timezone']} -> {escape(function)}; next fire {out['NextFire'] or 'never'}")


def _mappings(client: Client, function: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        params = {k: v for k, v in (("FunctionName", function), ("Marker", marker)) if v}
        page = client.json("GET", ESM, params=params)
        out.extend(page.get("EventSourceMappings") or [])
        marker = page.get("NextMarker")
        if not marker:
            return out


@trigger.command("ls")
@click.argument("function", required=False, callback=lambda c, p, v: v and check_name(c, p, v))
@json_option
@with_client
def ls(client: Client, function: str | None, as_json: bool) -> None:
    """List table triggers and schedules (of one FUNCTION, or all)."""
    mappings = _mappings(client, function)
    schedules = client.json("GET", SCHEDULES,
                            params={"FunctionName": function} if function else None)["Schedules"]
    buckets = bucket_triggers(client, function)
    if as_json:
        print_json({"EventSourceMappings": mappings, "Schedules": schedules,
                    "BucketTriggers": buckets})
        return
    if not mappings and not schedules and not buckets:
        note("no triggers; add one with [bold]dayfly trigger add FUNCTION --table URL[/] or "
             "[bold]--cron EXPR[/]")
        return
    t = table("ID", "FUNCTION", "KIND", "~SOURCE", "STATE", "~HEALTH", "~LAST")
    for m in mappings:
        fn = m["FunctionArn"].split(":function:", 1)[-1]
        t.add_row(m["UUID"], escape(fn), "table", escape(m["Dayfly"]["Table"]), m["State"],
                  escape(m.get("Health", "-")), escape(m.get("LastProcessingResult") or "-"))
    for s in schedules:
        fn = s["FunctionName"] + (f":{s['Qualifier']}" if s.get("Qualifier") else "")
        t.add_row(s["Id"], escape(fn), "schedule",
                  escape(f"{s['ScheduleExpression']} ({s['Timezone']}, missed: "
                         f"{s['MissedFirePolicy']})"), s["State"], "-",
                  f"last {s['LastFire'] or '-'}, next {s['NextFire'] or '-'}")
    for b in buckets:
        tid, fn, kind, where = bucket_trigger_row(b)
        t.add_row(tid, escape(fn), kind, escape(where), "ENABLED", "-", "-")
    console().print(t)


@trigger.command("rm")
@click.argument("trigger_id", metavar="ID")
@with_client
def rm(client: Client, trigger_id: str) -> None:
    """Remove a table trigger (by UUID) or a schedule (by id or name)."""
    response = client.request("DELETE", f"{ESM}/{trigger_id}", allow=(404,))
    if response.status_code != 404:
        cleanup = (response.json().get("Dayfly") or {}).get("Cleanup")
        note(f"removed table trigger {escape(trigger_id)}" + (f" ({cleanup})" if cleanup else ""))
        return
    response = client.request("DELETE", f"{SCHEDULES}/{trigger_id}", allow=(404,))
    if response.status_code == 404 and remove_bucket_trigger(client, trigger_id):
        return
    if response.status_code == 404:
        raise CliError(f"no trigger {trigger_id}", hint="`dayfly trigger ls` lists them")
    note(f"removed schedule {escape(trigger_id)}")
