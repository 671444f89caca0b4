"""Bucket operations: ListBuckets, Create/Delete/HeadBucket, GetBucketLocation, ListObjects."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

import orjson
from starlette.responses import Response

from ...control.notifications import LOCAL
from ...stores.listing import Listing
from ...stores.objects import ObjectInfo
from ...stores.s3errors import S3Error
from .context import Ctx, quoted
from .payload import Payload
from .xml import el, iso, parse, text, wrap, xml_response

OWNER = wrap("Owner", el("ID", "dayfly"), el("DisplayName", "dayfly"))


async def list_buckets(ctx: Ctx) -> Response:
    """ListBuckets, in pages of `max-buckets` (continuation-token, prefix) when asked."""
    limit = ctx.int_param("max-buckets", 10_000, 1, 10_000)
    token, prefix = ctx.query.get("continuation-token", ""), ctx.query.get("prefix", "")
    after = ""
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode()
        except (binascii.Error, ValueError):
            raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                          ArgumentName="continuation-token") from None
    buckets = await ctx.store.list_buckets(after, prefix=prefix)
    if ctx.scope is not None:  # a function's key sees the buckets it declared, no others
        buckets = [b for b in buckets if b[0] in ctx.scope.buckets]
    owner = OWNER
    if ctx.access is not None and ctx.principal is not None:  # a user's own buckets only
        buckets = [b for b in buckets if ctx.access.get(b[0]).owner == ctx.principal]
        owner = wrap("Owner", el("ID", ctx.principal), el("DisplayName", ctx.principal))
    more = len(buckets) > limit
    buckets = buckets[:limit]
    nxt = base64.urlsafe_b64encode(buckets[-1][0].encode()).decode() if more else None
    return xml_response("ListAllMyBucketsResult", owner, wrap("Buckets", *(
        wrap("Bucket", el("Name", name), el("CreationDate", iso(created)),
             el("BucketRegion", ctx.store.region))
        for name, created in buckets)), el("ContinuationToken", nxt),
        el("Prefix", prefix if "prefix" in ctx.query else None))


async def create_bucket(ctx: Ctx) -> Response:
    body = await Payload(ctx.request, ctx.auth, limit=64 * 1024).read(64 * 1024)
    location = ""
    if body.strip():
        config = parse(body, "CreateBucketConfiguration")
        location = text(config, "LocationConstraint", "").strip()
        if len(location) > 64 or not all(c.isalnum() or c == "-" for c in location):
            raise S3Error("InvalidLocationConstraint", "The specified location-constraint is "
                          "not valid", LocationConstraint=location[:64])
    await ctx.store.create_bucket(ctx.bucket, location)
    return Response(headers={"location": f"/{ctx.bucket}"})


async def delete_bucket(ctx: Ctx) -> Response:
    await ctx.store.delete_bucket(ctx.bucket)
    if ctx.triggers is not None:  # its notification settings go with it
        await ctx.triggers.notifications.forget(LOCAL, ctx.bucket)
    return Response(status_code=204)


async def head_bucket(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    return Response(headers={"x-amz-bucket-region": ctx.store.region})


async def get_location(ctx: Ctx) -> Response:
    """The LocationConstraint the bucket was created with (else the node's region)."""
    _, location = await ctx.store.bucket_settings(ctx.bucket)
    region = location or ctx.store.region
    return xml_response("LocationConstraint", "" if region == "us-east-1" else region)


def _token(start: str | None, inclusive: bool) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([start, inclusive])).decode()


def _untoken(token: str) -> tuple[str, bool]:
    try:
        start, inclusive = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(start, str) and isinstance(inclusive, bool):
            return start, inclusive
    except (binascii.Error, ValueError, TypeError):
        pass
    raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                  ArgumentName="continuation-token")


def _contents(info: ObjectInfo, enc, owner: bool) -> str:
    c = info.checksum or {}
    return wrap("Contents", el("Key", enc(info.key)), el("LastModified", iso(info.modified)),
                el("ETag", quoted(info.etag)),
                el("ChecksumAlgorithm", c.get("algorithm", "").upper() or None),
                el("ChecksumType", c.get("type")), el("Size", info.size),
                el("StorageClass", "STANDARD"), OWNER if owner else "")


async def list_objects(ctx: Ctx) -> Response:
    """ListObjectsV2 (list-type=2) or the original ListObjects (markers)."""
    q = ctx.query
    v2 = q.get("list-type") == "2"
    if "list-type" in q and not v2:
        raise S3Error("InvalidArgument", "Invalid List Type specified", ArgumentName="list-type")
    encoding = q.get("encoding-type")
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type")
    enc = (lambda s: quote(s, safe="/")) if encoding else (lambda s: s)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    max_keys = ctx.int_param("max-keys", 1000, 0, 1000)
    if v2 and q.get("continuation-token"):  # an empty token starts at the beginning
        start, inclusive = _untoken(q["continuation-token"])
    else:
        start, inclusive = q.get("start-after" if v2 else "marker", ""), False
        if not start:
            inclusive = True
    if max_keys == 0:  # S3: nothing, and not truncated
        await ctx.store.head_bucket(ctx.bucket)
        page = Listing()
    else:
        page = await ctx.store.list_objects(ctx.bucket, prefix=prefix, delimiter=delimiter,
                                            start=start, inclusive=inclusive,
                                            max_keys=max_keys)
    # v1's Prefix is echoed as sent, even with encoding-type=url (as S3; botocore decodes it
    # only in v2's answer)
    head = [el("Name", ctx.bucket), el("Prefix", enc(prefix) if v2 else prefix),
            el("Delimiter", enc(delimiter) if delimiter else None), el("MaxKeys", max_keys),
            el("EncodingType", encoding)]
    if v2:
        head += [el("KeyCount", len(page.rows) + len(page.prefixes)),
                 el("ContinuationToken", q.get("continuation-token")),
                 el("StartAfter", enc(q["start-after"]) if "start-after" in q else None)]
        if page.truncated:
            head.append(el("NextContinuationToken", _token(page.next_start, page.next_inclusive)))
    else:
        head.append(el("Marker", enc(q.get("marker", ""))))
        if page.truncated and page.last is not None:
            head.append(el("NextMarker", enc(page.last)))
    head.append(el("IsTruncated", page.truncated))
    owner = not v2 or q.get("fetch-owner") == "true"
    rows = [_contents(ObjectInfo.of(r), enc, owner) for r in page.rows]
    prefixes = [wrap("CommonPrefixes", el("Prefix", enc(p))) for p in page.prefixes]
    return xml_response("ListBucketResult", *head, *rows, *prefixes)
