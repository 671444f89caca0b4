"""S3 event notifications posted by external stores (MinIO webhooks, S3-compatible relays):
the body's records, checked and brought to AWS's shape, so that handlers and parsers written for
S3 (aws-lambda-powertools' S3Model) take them: eventName without the `s3:` prefix, eventSource
`aws:s3` (the store's own, e.g. `minio:s3`, kept as `dayfly.eventSource`), and the envelope
fields AWS always sends filled in where the store left them out (the time of receipt, the
sender's address, the id of the ingest request). Object fields the body does not carry (a
minimal record's size and ETag) are not made up.

Accepted bodies: AWS's `{"Records": [...]}`; MinIO's `{"EventName": "s3:ObjectCreated:Put",
"Key": "bucket/key", "Records": [...]}` (a body with EventName and Key but no Records gets a
minimal record); S3's `{"Event": "s3:TestEvent", ...}` (no records).
"""

from __future__ import annotations

import time
import uuid
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


def _aws_shaped(rec: dict[str, Any], sender: str, request_id: str, now: str) -> dict[str, Any]:
    """The record with AWS's eventSource and envelope; what the store sent is never replaced."""
    out = {**rec, "eventName": rec["eventName"].removeprefix("s3:"), "eventSource": "aws:s3"}
    if rec.get("eventSource", "aws:s3") != "aws:s3":
        out["dayfly"] = {"eventSource": rec["eventSource"]}
    for key, value in (("eventVersion", "2.1"), ("awsRegion", ""), ("eventTime", now),
                       ("userIdentity", {"principalId": ""}),
                       ("requestParameters", {"sourceIPAddress": sender}),
                       ("responseElements", {"x-amz-request-id": request_id,
                                             "x-amz-id-2": request_id})):
        if not isinstance(out.get(key), dict if isinstance(value, dict) else str):
            out[key] = value
    s3 = out["s3"] = {"s3SchemaVersion": "1.0", "configurationId": "", **out["s3"]}
    bucket = s3["bucket"] = {"ownerIdentity": {"principalId": ""}, **s3["bucket"]}
    bucket.setdefault("arn", f"arn:aws:s3:::{bucket['name']}")
    return out


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
    return rec


def records_of(body: Any, sender: str = "127.0.0.1") -> list[dict[str, Any]]:
    """Every record of the body in AWS's shape; InvalidRequestContent names what is wrong.
    `sender` is the address the body came from (requestParameters.sourceIPAddress if absent)."""
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
    checked = [_check(i, r) for i, r in enumerate(recs)]
    request_id = uuid.uuid4().hex[:16].upper()
    t = time.time()
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
    return [_aws_shaped(r, sender, request_id, now) for r in checked]


def routable(record: dict[str, Any]) -> bool:
    """Only object creations and removals can trigger functions."""
    return record["eventName"].startswith(ROUTED)
