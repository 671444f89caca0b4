"""The objects an event names: S3 event records (bucket triggers) or a direct request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus


class BadRequest(ValueError):
    """The event is neither an S3 event nor a request this builtin understands."""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object to work on, and the event that named it."""

    bucket: str
    key: str
    size: int | None = None
    event: str = "direct"


def s3_records(event: Any) -> list[dict[str, Any]] | None:
    """The S3 records of a bucket event, or None if the event is not one."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return None
    recs = [r for r in event["Records"] if isinstance(r, dict) and isinstance(r.get("s3"), dict)]
    return recs if len(recs) == len(event["Records"]) and recs else None


def objects(event: Any) -> tuple[list[ObjectRef], list[str]]:
    """(objects created by an S3 event or named by `{"bucket", "key"}`, notes on skipped ones)."""
    records = s3_records(event)
    if records is not None:
        out, skipped = [], []
        for r in records:
            bucket = r["s3"].get("bucket", {}).get("name", "")
            obj = r["s3"].get("object", {})
            key = unquote_plus(obj.get("key", ""))
            name = str(r.get("eventName", ""))
            if not name.startswith(("ObjectCreated", "s3:ObjectCreated")):
                skipped.append(f"{bucket}/{key}: {name} events are ignored")
                continue
            out.append(ObjectRef(bucket, key, obj.get("size"), name))
        return out, skipped
    if isinstance(event, dict) and isinstance(event.get("bucket"), str) and \
            isinstance(event.get("key"), str) and event["key"]:
        return [ObjectRef(event["bucket"], event["key"])], []
    raise BadRequest("expected an S3 event ({\"Records\": [...]}) or {\"bucket\": ..., "
                     "\"key\": ...}")
