"""S3 event notifications posted by external stores (MinIO webhooks, S3-compatible relays):
the body's records, checked and brought to AWS's shape (eventName without the `s3:` prefix).

Accepted bodies: AWS's `{"Records": [...]}`; MinIO's `{"EventName": "s3:ObjectCreated:Put",
"Key": "bucket/key", "Records": [...]}` (a body with EventName and Key but no Records gets a
minimal record); S3's `{"Event": "s3:TestEvent", ...}` (no records).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from ..errors import InvalidRequestContent

MAX_RECORDS = 1000
ROUTED = ("ObjectCreated:", "ObjectRemoved:")


def _bad(msg: str) -> InvalidRequestContent:
    return InvalidRequestContent(f"not an S3 event notification: {msg}")


def _minimal(event: Any, key: Any) -> dict[str, Any]:
    if not isinstance(event, str) or not isinstance(key, str) or "/" not in key.strip("/"):
        raise _bad("EventName and Key (\"bucket/key\") must be strings")
    bucket, _, name = key.lstrip("/").partition("/")
    return {"eventVersion": "2.0", "eventSource": "minio:s3", "eventName": event,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn":
                                                        f"arn:aws:s3:::{bucket}"},
                   "object": {"key": quote_plus(name, safe="/")}}}


def _check(i: int, rec: Any) -> dict[str, Any]:
    where = f"Records[{i}]"
    if not isinstance(rec, dict):
        raise _bad(f"{where} is not an object")
    name = rec.get("eventName")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.eventName is missing")
    s3 = rec.get("s3")
    bucket = s3.get("bucket") if isinstance(s3, dict) else None
    obj = s3.get("object") if isinstance(s3, dict) else None
    if not isinstance(bucket, dict) or not isinstance(bucket.get("name"), str) or \
            not bucket["name"]:
        raise _bad(f"{where}.s3.bucket.name is missing")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not obj["key"]:
        raise _bad(f"{where}.s3.object.key is missing")
    return {**rec, "eventName": name.removeprefix("s3:")}


def records_of(body: Any) -> list[dict[str, Any]]:
    """Every record of the body, normalized; InvalidRequestContent names what is wrong."""
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    if "Records" in body:
        recs = body["Records"]
        if not isinstance(recs, list):
            raise _bad("Records must be a list")
    elif "EventName" in body or "Key" in body:
        recs = [_minimal(body.get("EventName"), body.get("Key"))]
    elif body.get("Event") == "s3:TestEvent":
        recs = []
    else:
        raise _bad("expected Records (AWS), or EventName and Key (MinIO)")
    if len(recs) > MAX_RECORDS:
        raise _bad(f"at most {MAX_RECORDS} records per request")
    return [_check(i, r) for i, r in enumerate(recs)]


def routable(record: dict[str, Any]) -> bool:
    """Only object creations and removals can trigger functions."""
    return record["eventName"].startswith(ROUTED)
