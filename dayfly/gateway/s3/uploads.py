"""Multipart operations: Create, UploadPart(Copy), Complete, Abort, ListParts, ListUploads."""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.responses import Response

from ...numbers import uint
from ...stores import checksums, sse
from ...stores.blobs import Blob
from ...stores.listing import UploadListing
from ...stores.multipart import MAX_PARTS
from ...stores.s3errors import S3Error
from .context import (
    Ctx,
    checksum_headers,
    copy_source,
    quoted,
    stored_headers,
    version_headers,
)
from .objects import check_conditions, refuse_unimplemented, write_conditions
from .payload import Payload, checksum_algorithm
from .xml import el, iso, parse, text, wrap, xml_response

MAX_XML = 4 * 1024 * 1024  # CompleteMultipartUpload: 10,000 parts
OWNER = wrap("Owner", el("ID", "dayfly"), el("DisplayName", "dayfly"))
INITIATOR = wrap("Initiator", el("ID", "dayfly"), el("DisplayName", "dayfly"))
_RANGE = re.compile(r"bytes=(\d{1,19})-(\d{1,19})")


def _checksum_config(ctx: Ctx) -> dict[str, str] | None:
    alg = ctx.headers.get("x-amz-checksum-algorithm")
    kind = ctx.headers.get("x-amz-checksum-type", "").upper()
    if alg is None:
        if kind:
            raise S3Error("InvalidRequest", "x-amz-checksum-type needs x-amz-checksum-algorithm")
        return None
    alg = checksum_algorithm(alg)
    kind = kind or ("FULL_OBJECT" if alg == "crc64nvme" else "COMPOSITE")
    if kind not in ("COMPOSITE", "FULL_OBJECT") or (
            kind == "FULL_OBJECT" and alg not in checksums.FULL_OBJECT_OK) or (
            kind == "COMPOSITE" and alg == "crc64nvme"):
        raise S3Error("InvalidRequest", f"The {kind} checksum type cannot be used with the "
                      f"{alg} checksum algorithm.")
    return {"algorithm": alg, "type": kind}


def _config_headers(config: dict[str, str] | None) -> dict[str, str]:
    if not config:
        return {}
    return {"x-amz-checksum-algorithm": config["algorithm"].upper(),
            "x-amz-checksum-type": config["type"]}


async def create_upload(ctx: Ctx) -> Response:
    refuse_unimplemented(ctx)
    config = _checksum_config(ctx)
    upload_id = await ctx.store.multipart.create(ctx.bucket, ctx.key, stored_headers(ctx.request),
                                                 config)
    return xml_response("InitiateMultipartUploadResult", el("Bucket", ctx.bucket),
                        el("Key", ctx.key), el("UploadId", upload_id),
                        headers=_config_headers(config))


def _part_number(ctx: Ctx) -> int:
    raw = ctx.query.get("partNumber", "")
    number = uint(raw)
    if number is None or not 1 <= number <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"Part number must be an integer between 1 and "
                      f"{MAX_PARTS}, inclusive", ArgumentName="partNumber",
                      ArgumentValue=raw[:20])
    return number


async def upload_part(ctx: Ctx) -> Response:
    number = _part_number(ctx)
    upload_id = ctx.query["uploadId"]
    if "x-amz-copy-source" in ctx.headers:
        return await _copy_part(ctx, upload_id, number)
    upload = await ctx.store.multipart.get(ctx.bucket, ctx.key, upload_id)
    payload = Payload(ctx.request, ctx.auth)
    own = upload.checksum["algorithm"] if upload.checksum else None
    sums: dict[str, str] = {}

    def verify(blob: Blob) -> dict[str, str]:
        sums.update(payload.verify(blob))
        if own and own not in sums:  # the upload's algorithm is kept for every part
            sums[own] = checksums.b64(blob.digests[own])
        return sums
    part = await ctx.store.multipart.upload_part(
        ctx.bucket, ctx.key, upload_id, number, payload.chunks(),
        algorithms=payload.algorithms | ({own} if own else set()), verify=verify)
    return Response(headers={"etag": quoted(part.etag), **checksum_headers(part.checksums,
                                                                          "COMPOSITE")})


async def _copy_part(ctx: Ctx, upload_id: str, number: int) -> Response:
    src_bucket, src_key, src_version = copy_source(ctx)
    src = await ctx.store.get_object(src_bucket, src_key, src_version)
    if sse.encrypted(src.headers):
        raise S3Error("NotImplemented", "UploadPartCopy from an encrypted object is not "
                      "implemented")
    check_conditions(src, ctx.headers.get, "x-amz-copy-source-")
    spec = ctx.headers.get("x-amz-copy-source-range")
    rng = (0, src.size - 1)
    if spec is not None:
        m = _RANGE.fullmatch(spec.strip())
        if not m or not int(m[1]) <= int(m[2]) < src.size:
            raise S3Error("InvalidArgument", "Range specified is not valid for source object of "
                          f"size: {src.size}", ArgumentName="x-amz-copy-source-range")
        rng = (int(m[1]), int(m[2]))
    part = await ctx.store.multipart.copy_part(ctx.bucket, ctx.key, upload_id, number, src,
                                               *rng)
    return xml_response("CopyPartResult", el("LastModified", iso(part.modified)),
                        el("ETag", quoted(part.etag)))


async def complete_upload(ctx: Ctx) -> Response:
    # x-amz-checksum-* here is the whole object's checksum, not the XML body's
    payload = Payload(ctx.request, ctx.auth, limit=MAX_XML, body_checksums=False)
    root = parse(await payload.read(MAX_XML), "CompleteMultipartUpload")
    chosen = []
    for node in root.findall("Part"):
        number = uint(text(node, "PartNumber").strip())
        if number is None:
            raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                          "validate against our published schema (PartNumber)")
        sums = {checksum_algorithm(c.tag[8:]): (c.text or "").strip() for c in node
                if c.tag.startswith("Checksum") and c.tag != "ChecksumType"}
        chosen.append((number, text(node, "ETag"), sums))
    if_match, if_none_match = write_conditions(ctx)
    raw_size = ctx.headers.get("x-amz-mp-object-size")
    size = None if raw_size is None else uint(raw_size)
    if raw_size is not None and size is None:
        raise S3Error("InvalidArgument", "x-amz-mp-object-size must be a non-negative integer",
                      ArgumentName="x-amz-mp-object-size")
    info = await ctx.store.multipart.complete(ctx.bucket, ctx.key, ctx.query["uploadId"], chosen,
                                              ctx.origin(), expected=payload.object_checksums,
                                              if_match=if_match, if_none_match=if_none_match,
                                              size=size)
    c = info.checksum
    host = ctx.headers.get("host", "localhost")
    return xml_response(
        "CompleteMultipartUploadResult", el("Location", f"http://{host}/{ctx.bucket}/{ctx.key}"),
        el("Bucket", ctx.bucket), el("Key", ctx.key), el("ETag", quoted(info.etag)),
        el(f"Checksum{c['algorithm'].upper()}", c["value"]) if c else "",
        el("ChecksumType", c["type"]) if c else "", headers=version_headers(info))


async def abort_upload(ctx: Ctx) -> Response:
    await ctx.store.multipart.abort(ctx.bucket, ctx.key, ctx.query["uploadId"])
    return Response(status_code=204)


async def list_parts(ctx: Ctx) -> Response:
    after = ctx.int_param("part-number-marker", 0, 0)
    limit = ctx.int_param("max-parts", 1000, 0, 1000)
    upload, parts, truncated = await ctx.store.multipart.list_parts(
        ctx.bucket, ctx.key, ctx.query["uploadId"], after, limit)
    config = upload.checksum or {}
    rows = [wrap("Part", el("PartNumber", p.number), el("LastModified", iso(p.modified)),
                 el("ETag", quoted(p.etag)), el("Size", p.size),
                 *(el(f"Checksum{a.upper()}", v) for a, v in p.checksums.items()))
            for p in parts]
    return xml_response(
        "ListPartsResult", el("Bucket", ctx.bucket), el("Key", ctx.key),
        el("UploadId", upload.id), INITIATOR, OWNER, el("StorageClass", "STANDARD"),
        el("PartNumberMarker", after),
        el("NextPartNumberMarker", parts[-1].number if parts else after),
        el("MaxParts", limit), el("IsTruncated", truncated),
        el("ChecksumAlgorithm", config.get("algorithm", "").upper() or None),
        el("ChecksumType", config.get("type")), *rows)


async def list_uploads(ctx: Ctx) -> Response:
    """ListMultipartUploads: by key, then age; prefix, delimiter, key and upload-id markers."""
    q = ctx.query
    encoding = q.get("encoding-type")
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type")
    enc = (lambda s: quote(s, safe="/")) if encoding else (lambda s: s)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, upload_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    limit = ctx.int_param("max-uploads", 1000, 0, 1000)
    if limit == 0:  # as ListObjects' max-keys=0: nothing, and not truncated
        await ctx.store.head_bucket(ctx.bucket)
        page = UploadListing()
    else:
        page = await ctx.store.multipart.list_uploads(
            ctx.bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            upload_marker=upload_marker if key_marker else "", max_uploads=limit)
    head = [el("Bucket", ctx.bucket), el("KeyMarker", enc(key_marker)),
            el("UploadIdMarker", upload_marker if key_marker else ""),
            el("Prefix", enc(prefix)), el("Delimiter", enc(delimiter) if delimiter else None),
            el("MaxUploads", limit), el("EncodingType", encoding),
            el("IsTruncated", page.truncated)]
    if page.truncated and page.next_key is not None:
        head += [el("NextKeyMarker", enc(page.next_key)),
                 el("NextUploadIdMarker", page.next_upload or "")]
    uploads = [wrap("Upload", el("Key", enc(r["key"])), el("UploadId", r["id"]), INITIATOR,
                    OWNER, el("StorageClass", "STANDARD"), el("Initiated", iso(r["created"])))
               for r in page.rows]
    prefixes = [wrap("CommonPrefixes", el("Prefix", enc(p))) for p in page.prefixes]
    return xml_response("ListMultipartUploadsResult", *head, *uploads, *prefixes)
