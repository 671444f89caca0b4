"""DynamoDB-Streams shapes: typed attribute values, stream records, on-failure records.

Records carry what AWS's own parsers require (eventSource `aws:dynamodb`, an eventSourceARN of
a DynamoDB stream) and say where they came from: the ARN's table is the captured table and its
stream label the database (`sqlite:app.db:<hash of its path>`, `postgresql:host:port:db`);
`dayfly.eventSourceArn` is the mapping's own source (`arn:dayfly:table:...`, no password).
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson

from ...types import ACCOUNT_ID
from .source import Change, TableURL

VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
EVENT_NAMES = {"I": "INSERT", "U": "MODIFY", "D": "REMOVE"}


def attribute(value: Any) -> dict[str, Any]:
    """One value as a DynamoDB typed attribute value ({"S": ...}, {"N": "..."}, ...)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, Decimal):
        return {"N": str(value)} if value.is_finite() else {"S": str(value)}
    if isinstance(value, float):
        return {"N": repr(value)} if math.isfinite(value) else {"S": repr(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"B": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {str(k): attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [attribute(v) for v in value]}
    return {"S": str(value)}


def image(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a DynamoDB item (column name -> typed attribute value)."""
    return {col: attribute(v) for col, v in row.items()}


def event_id(source_key: str, seq: int) -> str:
    """The same change always gets the same id, so redeliveries can be recognised."""
    return hashlib.md5(f"{source_key}/{seq}".encode(), usedforsecurity=False).hexdigest()


def stream_arn(url: TableURL, region: str) -> str:
    """A DynamoDB stream ARN naming the captured table, with its database as the stream label."""
    if url.scheme == "sqlite":
        path = os.path.realpath(url.dsn)  # file names repeat; the path tells databases apart
        digest = hashlib.md5(path.encode(), usedforsecurity=False).hexdigest()[:8]
        label = f"sqlite:{os.path.basename(path)}:{digest}"
    else:
        u = urlsplit(url.dsn)
        label = f"postgresql:{u.hostname or ''}:{u.port or 5432}:{u.path.strip('/')}"
    return f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{url.table}/stream/{label}"


def stream_record(change: Change, *, view: str, source_key: str, source_arn: str,
                  dayfly_arn: str, region: str) -> dict[str, Any]:
    """One change as a DynamoDB Streams record, with the images its StreamViewType includes."""
    ddb: dict[str, Any] = {"ApproximateCreationDateTime": int(change.ts),
                           "Keys": image(change.keys)}
    if view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and change.new is not None:
        ddb["NewImage"] = image(change.new)
    if view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and change.old is not None:
        ddb["OldImage"] = image(change.old)
    ddb["SequenceNumber"] = str(change.seq)
    ddb["SizeBytes"] = len(orjson.dumps([ddb.get(k) for k in ("Keys", "NewImage", "OldImage")]))
    ddb["StreamViewType"] = view
    return {"eventID": event_id(source_key, change.seq), "eventName": EVENT_NAMES[change.op],
            "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": region,
            "dynamodb": ddb, "eventSourceARN": source_arn,
            "dayfly": {"eventSourceArn": dayfly_arn}}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def failure_record(batch: list[Change], *, condition: str, function_arn: str, attempts: int,
                   error_type: str | None, source_key: str, source_arn: str,
                   dayfly_arn: str, request_id: str) -> dict[str, Any]:
    """Lambda's on-failure record for a stream batch (the records themselves are not included)."""
    return {
        "requestContext": {"requestId": request_id, "functionArn": function_arn,
                           "condition": condition, "approximateInvokeCount": attempts},
        "responseContext": {"statusCode": 200, "executedVersion": function_arn.rsplit(":", 1)[-1]
                            if function_arn.count(":") > 6 else "$LATEST",
                            "functionError": error_type or ""},
        "version": "1.0",
        "timestamp": _iso(time.time()),
        "DDBStreamBatchInfo": {
            "shardId": f"shardId-{event_id(source_key, 0)[:20]}",
            "startSequenceNumber": str(batch[0].seq),
            "endSequenceNumber": str(batch[-1].seq),
            "approximateArrivalOfFirstRecord": _iso(batch[0].ts),
            "approximateArrivalOfLastRecord": _iso(batch[-1].ts),
            "batchSize": len(batch),
            "streamArn": source_arn,
        },
        "dayfly": {"eventSourceArn": dayfly_arn},
    }
