"""Events as notices: bucket changes, table changes, destination records and direct calls,
each flattened into fields a message template can name (`${bucket}`, `${new.title}`)."""

from __future__ import annotations

import hashlib
import json
import string
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to notify about."""

    id: str  # stable across redeliveries of the same event: receivers deduplicate on it
    source: str  # s3 | table | destination | direct
    event: str  # ObjectCreated:Put, INSERT, Success, ...
    origin: str  # a URI naming where it happened (CloudEvents `source`)
    subject: str  # what changed: bucket/key, table and keys, function
    time: str  # ISO 8601, UTC
    fields: dict[str, Any]  # what templates can name
    record: Any  # the original record


def _iso(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _digest(obj: Any) -> str:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(data).hexdigest()[:32]


def plain(value: Any) -> Any:
    """A DynamoDB typed attribute value ({"S": "x"}, {"N": "1"}, {"M": ...}) as plain JSON."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    (kind, v), = value.items()
    if kind == "S" or kind == "B":
        return v
    if kind == "N":
        d = Decimal(v)
        return int(d) if d == d.to_integral_value() else float(d)
    if kind == "BOOL":
        return bool(v)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: plain(x) for k, x in v.items()}
    if kind == "L":
        return [plain(x) for x in v]
    if kind in ("SS", "NS", "BS"):
        return [plain({kind[0]: x}) for x in v]
    return value


def _item(image: Any) -> dict[str, Any]:
    return {k: plain(v) for k, v in image.items()} if isinstance(image, dict) else {}


def _s3(r: dict[str, Any]) -> Notice:
    bucket = r["s3"].get("bucket", {}).get("name", "")
    obj = r["s3"].get("object", {})
    key = unquote_plus(obj.get("key", ""))
    f = {"bucket": bucket, "key": key, "size": obj.get("size"), "etag": obj.get("eTag"),
         "region": r.get("awsRegion")}
    ident = _digest([r.get("eventName"), bucket, key, obj.get("sequencer"), obj.get("eTag")])
    return Notice(ident, "s3", str(r.get("eventName", "")), f"/dayfly/buckets/{bucket}",
                  f"{bucket}/{key}", str(r.get("eventTime") or _iso()), f, r)


def _table(r: dict[str, Any]) -> Notice:
    ddb = r.get("dynamodb") or {}
    arn = str(r.get("eventSourceARN", ""))
    table = arn.rpartition("#")[2] if "#" in arn else (arn.split("/")[1] if "/" in arn else arn)
    keys = _item(ddb.get("Keys"))
    f = {"table": table, "keys": keys, "new": _item(ddb.get("NewImage")),
         "old": _item(ddb.get("OldImage")), "sequence": ddb.get("SequenceNumber")}
    when = ddb.get("ApproximateCreationDateTime")
    subject = f"{table} " + ", ".join(f"{k}={v}" for k, v in keys.items())
    return Notice(str(r.get("eventID") or _digest(r)), "table", str(r.get("eventName", "")),
                  arn or f"/dayfly/tables/{table}", subject,
                  _iso(float(when)) if when is not None else _iso(), f, r)


def _destination(r: dict[str, Any]) -> Notice:
    ctx = r.get("requestContext") or {}
    fn = str(ctx.get("functionArn", ""))
    condition = str(ctx.get("condition", ""))
    f = {"function": fn.split(":function:")[-1], "function_arn": fn, "condition": condition,
         "request_id": ctx.get("requestId"), "attempts": ctx.get("approximateInvokeCount"),
         "request": r.get("requestPayload"), "response": r.get("responsePayload")}
    return Notice(_digest([ctx.get("requestId"), condition]), "destination", condition, fn,
                  str(f["function"]), str(r.get("timestamp") or _iso()), f, r)


def _direct(event: Any, request_id: str, function: str) -> Notice:
    f = dict(event) if isinstance(event, dict) else {"value": event}
    kind = str(f.get("event") or f.get("type") or "notification")
    subject = str(f.get("subject") or function)
    return Notice(f"{request_id}-0", "direct", kind, f"/dayfly/functions/{function}", subject,
                  _iso(), f, event)


def notices(event: Any, request_id: str = "", function: str = "") -> list[Notice]:
    """Every notice an event carries (a batch has one per record)."""
    if isinstance(event, dict) and isinstance(event.get("Records"), list) and event["Records"]:
        out = []
        for r in event["Records"]:
            if isinstance(r, dict) and isinstance(r.get("s3"), dict):
                out.append(_s3(r))
            elif isinstance(r, dict) and isinstance(r.get("dynamodb"), dict):
                out.append(_table(r))
            else:
                out.append(_direct(r, f"{request_id}-{len(out)}", function))
        return out
    if isinstance(event, dict) and isinstance(event.get("requestContext"), dict) and \
            "condition" in event["requestContext"]:
        return [_destination(event)]
    return [_direct(event, request_id, function)]


def template_fields(n: Notice) -> dict[str, Any]:
    """What `${name}` can name in a template: the notice's own fields, then the event's."""
    return {**n.fields, "id": n.id, "source": n.source, "event": n.event, "origin": n.origin,
            "subject": n.subject, "time": n.time}


class Template(string.Template):
    """`${name}`, `${new.title}`: dotted names reach into nested fields; nothing is evaluated."""

    braceidpattern = r"(?a:[_a-z][_a-z0-9]*(?:\.[_a-z0-9]+)*)"


class _Lookup(dict):
    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__()
        self.fields = values  # not `values`: that would shadow dict.values()

    def __getitem__(self, name: str) -> str:
        value: Any = self.fields
        for part in name.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise KeyError(name)
        if isinstance(value, dict | list):
            return json.dumps(value, sort_keys=True, default=str)
        return "" if value is None else str(value)


def render(template: str, n: Notice) -> str:
    """The template over the notice's fields; unknown names stay as written."""
    return Template(template).safe_substitute(_Lookup(template_fields(n)))
