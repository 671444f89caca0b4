"""Bucket notifications as dayfly's own resource (what `dayfly trigger` uses), over the same
configurations S3's Put/GetBucketNotificationConfiguration edit.

    GET    /dayfly/v1/bucket-triggers[?function=&source=&bucket=]
    POST   /dayfly/v1/bucket-triggers   {"function", "bucket", "source"?, "events"?, "prefix"?,
                                         "suffix"?, "id"?} → 201
    DELETE /dayfly/v1/bucket-triggers/{id}[?source=&bucket=]
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.model import function_arn
from ..control.notifications import LOCAL, make_rule
from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from ..stores.s3errors import S3Error
from .common import JSON, json_body

P = "/dayfly/v1/bucket-triggers"


def _platform(request: Request):
    return request.app.state.platform


def _json(p: Any, t: dict[str, Any]) -> dict[str, Any]:
    return {**t, "function_arn": function_arn(p.settings.region, t["function"], t["qualifier"])}


async def list_triggers(request: Request) -> Response:
    p = _platform(request)
    q = request.query_params
    rows = p.bucket_triggers.notifications.listing(q.get("source"), q.get("bucket"),
                                                   q.get("function"))
    return JSON({"triggers": [_json(p, t) for t in rows]})


async def check_bucket(p: Any, source: Any, bucket: Any) -> None:
    """400 for a malformed bucket or source, 404 for one that does not exist."""
    if not isinstance(bucket, str) or not bucket or "/" in bucket or len(bucket) > 255:
        raise InvalidParameter("'bucket' must be a bucket name")
    if not isinstance(source, str):
        raise InvalidParameter("'source' must be the name of an ingest source, or 'local'")
    if source == LOCAL:
        try:
            await p.objects.head_bucket(bucket)
        except S3Error:
            raise ResourceNotFound(f"No bucket {bucket} in the built-in store",
                                   hint=f"create it first: aws s3 mb s3://{bucket}") from None
    elif not p.ingest_sources.exists(source):
        raise ResourceNotFound(f"No ingest source named {source}",
                               hint=f"`dayfly ingest add-source {source}` creates it")


async def add_trigger(request: Request) -> Response:
    p = _platform(request)
    body = await json_body(request, 64 * 1024)
    source, bucket = body.get("source", LOCAL), body.get("bucket")
    await check_bucket(p, source, bucket)
    rule = make_rule(body.get("function"), body.get("events", "created"),
                     body.get("prefix", ""), body.get("suffix", ""), body.get("id"))
    p.registry.config(rule.function, rule.qualifier)  # 404 for unknown functions
    await p.bucket_triggers.notifications.add(source, bucket, rule)
    return JSON(_json(p, {"source": source, "bucket": bucket, **rule.to_json()}),
                status_code=201)


async def remove_trigger(request: Request) -> Response:
    p = _platform(request)
    q = request.query_params
    rule_id = request.path_params["id"]
    found = [t for t in p.bucket_triggers.notifications.listing(q.get("source"), q.get("bucket"))
             if t["id"] == rule_id]
    if not found:
        raise ResourceNotFound(f"No bucket trigger with id {rule_id}",
                               hint="`dayfly trigger ls` lists them")
    if len(found) > 1:
        where = ", ".join(f"{t['bucket']} ({t['source']})" for t in found)
        raise ResourceConflict(f"bucket trigger id {rule_id} is used in several buckets: {where}",
                               hint="name the bucket (and source) too")
    t = found[0]
    await p.bucket_triggers.notifications.remove(t["source"], t["bucket"], rule_id)
    return Response(status_code=204)


routes = [
    Route(P, list_triggers, methods=["GET"]),
    Route(P, add_trigger, methods=["POST"]),
    Route(f"{P}/{{id}}", remove_trigger, methods=["DELETE"]),
]
