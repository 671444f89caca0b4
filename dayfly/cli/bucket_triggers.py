"""Bucket triggers for `dayfly trigger add/ls/rm` (`--bucket`): object events of a bucket in the
built-in store, or of an external store's bucket (`--source`), invoke a function."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from rich.markup import escape

from .client import Client
from .output import note, print_json

PATH = "/dayfly/v1/bucket-triggers"
EVENTS = ("created", "removed", "all")


def add_bucket_trigger(client: Client, function: str, bucket: str, events: str = "created",
                       prefix: str = "", suffix: str = "", source: str = "local",
                       as_json: bool = False) -> dict[str, Any]:
    """Add a notification configuration to the bucket; print what was added."""
    body = {"function": function, "bucket": bucket, "events": events, "prefix": prefix,
            "suffix": suffix, "source": source}
    out = client.json("POST", PATH, json=body)
    if as_json:
        print_json(out)
    else:
        where = "" if source == "local" else f" (source {escape(source)})"
        filters = " ".join(f"{k} {escape(repr(out[k]))}" for k in ("prefix", "suffix") if out[k])
        note(f"bucket trigger [bold]{out['id']}[/]: {escape(bucket)}{where} "
             f"{', '.join(out['events'])}{' ' + filters if filters else ''} -> "
             f"{escape(function)}")
    return out


def bucket_triggers(client: Client, function: str | None = None) -> list[dict[str, Any]]:
    """Every bucket trigger (of one function, or all)."""
    params = {"function": function.split(":", 1)[0]} if function else None
    return client.json("GET", PATH, params=params)["triggers"]


def bucket_trigger_row(t: dict[str, Any]) -> tuple[str, str, str, str]:
    """(id, function, kind, source) cells for a listing."""
    fn = t["function"] + (f":{t['qualifier']}" if t.get("qualifier") else "")
    where = t["bucket"] if t["source"] == "local" else f"{t['source']}:{t['bucket']}"
    filters = "".join(f" {k}={t[k]!r}" for k in ("prefix", "suffix") if t[k])
    events = ",".join(e.removeprefix("s3:") for e in t["events"])
    return t["id"], fn, "bucket", f"{where} {events}{filters}"


def remove_bucket_trigger(client: Client, trigger_id: str, bucket: str | None = None,
                          source: str | None = None) -> bool:
    """Remove a bucket trigger by id; False if there is none with that id."""
    params = {k: v for k, v in (("bucket", bucket), ("source", source)) if v}
    response = client.request("DELETE", f"{PATH}/{quote(trigger_id, safe='')}", params=params,
                              allow=(404,))
    if response.status_code == 404:
        return False
    note(f"removed bucket trigger {escape(trigger_id)}")
    return True
