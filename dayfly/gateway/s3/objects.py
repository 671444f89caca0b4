"""Object operations: Put, Get (ranges, conditions), Head, Delete, DeleteObjects, Copy."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from starlette.responses import Response, StreamingResponse

from ...numbers import uint
from ...stores import sse
from ...stores.blobs import Blob
from ...stores.objects import ObjectInfo, check_key, check_version_id
from ...stores.s3errors import S3Error
from . import encryption
from .context import (
    Ctx,
    byte_range,
    checksum_headers,
    copy_source,
    http_date,
    object_headers,
    quoted,
    stored_headers,
    version_headers,
)
from .payload import Payload
from .xml import el, iso, parse, text, wrap, xml_response

MAX_XML = 2 * 1024 * 1024  # DeleteObjects: 1000 keys of up to 1 KiB, plus markup
OVERRIDES = {f"response-{h}": h for h in ("content-type", "content-language", "expires",
                                          "cache-control", "content-disposition",
                                          "content-encoding")}


def _kept(sums: dict[str, str]) -> dict[str, str] | None:
    for alg, value in sums.items():
        return {"algorithm": alg, "value": value, "type": "FULL_OBJECT"}
    return None


STORAGE_CLASSES = frozenset({  # S3's; all but STANDARD are refused (NotImplemented)
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW", "EXPRESS_ONEZONE"})
UNIMPLEMENTED_HEADERS = ("x-amz-tagging", "x-amz-object-lock-mode",
                         "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
                         "x-amz-website-redirect-location", "x-amz-tagging-directive",
                         "x-amz-write-offset-bytes")


def refuse_unimplemented(ctx: Ctx) -> None:
    """Headers that ask for what dayfly does not do are refused, never ignored."""
    for name in UNIMPLEMENTED_HEADERS:
        if name in ctx.headers and not (name == "x-amz-tagging-directive"
                                        and ctx.headers[name].upper() == "COPY"):
            raise S3Error("NotImplemented", "A header you provided implies functionality that "
                          f"is not implemented: {name}")
    storage = ctx.headers.get("x-amz-storage-class", "STANDARD")
    if storage not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass", "The storage class you specified is not valid",
                      StorageClassRequested=storage[:40])
    if storage != "STANDARD":
        raise S3Error("NotImplemented", f"Storage class {storage[:40]!r} is not implemented: "
                      "every object is STANDARD")


async def put_object(ctx: Ctx) -> Response:
    refuse_unimplemented(ctx)
    if "x-amz-copy-source" in ctx.headers:
        return await copy_object(ctx)
    payload = Payload(ctx.request, ctx.auth)
    headers = stored_headers(ctx.request)
    encrypt, answer = None, {}
    asked = encryption.requested(ctx.headers.items(), ctx.query.items())
    if asked is not None:  # SSE-S3 (the node's key) or SSE-C (the customer's)
        if ctx.store.sse_key is None:
            raise S3Error("NotImplemented", "Server-side encryption is not set up on this node")
        nonce = sse.new_nonce()
        kept = asked.headers(nonce, ctx.store.sse_key)
        headers.update(kept)
        encrypt = sse.encryptor(asked.key or ctx.store.sse_key, nonce)
        answer = {k: v for k, v in kept.items() if not k.startswith(sse.PRIVATE)}
    sums: dict[str, str] = {}

    def verify(blob: Blob) -> dict[str, str] | None:
        sums.update(payload.verify(blob))
        return _kept(sums)
    if_match, if_none_match = write_conditions(ctx)
    info = await ctx.store.put_object(ctx.bucket, ctx.key, payload.chunks(), headers=headers,
                                      algorithms=payload.algorithms, verify=verify,
                                      origin=ctx.origin(), if_match=if_match,
                                      if_none_match=if_none_match, encrypt=encrypt)
    return Response(headers={"etag": quoted(info.etag), **checksum_headers(sums),
                             **version_headers(info), **answer})


def write_conditions(ctx: Ctx) -> tuple[str | None, bool]:
    """(If-Match's ETag, If-None-Match: *) of a PutObject or CompleteMultipartUpload."""
    match, none_match = ctx.headers.get("if-match"), ctx.headers.get("if-none-match")
    if match is not None and none_match is not None:
        raise S3Error("NotImplemented", "If-Match and If-None-Match together are not "
                      "implemented")
    if none_match is not None and none_match.strip() != "*":
        raise S3Error("NotImplemented", "If-None-Match on a write is implemented only as "
                      "If-None-Match: *")
    if match is not None:
        match = match.strip().removeprefix("W/").strip('"')
    return match, none_match is not None


def _since(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _matches(etag: str, header: str) -> bool:
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return "*" in tags or etag in tags


def check_conditions(info: ObjectInfo, get, prefix: str = "") -> None:
    """If-Match, If-None-Match, If-(Un)Modified-Since (or their x-amz-copy-source-if-* forms)."""
    match, none_match = get(f"{prefix}if-match"), get(f"{prefix}if-none-match")
    modified = int(info.modified)
    if match is not None and not _matches(info.etag, match):
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified "
                      "did not hold", Condition=f"{prefix or ''}If-Match")
    since = _since(get(f"{prefix}if-unmodified-since"))
    if match is None and since is not None and modified > since:
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified "
                      "did not hold", Condition=f"{prefix}If-Unmodified-Since")
    code = "PreconditionFailed" if prefix else "NotModified"
    since = _since(get(f"{prefix}if-modified-since"))
    if (none_match is not None and _matches(info.etag, none_match)) or (
            none_match is None and since is not None and modified <= since):
        exc = S3Error(code, "Not Modified" if not prefix else "At least one of the "
                      "pre-conditions you specified did not hold")
        if not prefix:  # a 304 names what the client has (RFC 9110 15.4.5)
            exc.headers.update({"etag": quoted(info.etag),
                                "last-modified": http_date(info.modified),
                                **version_headers(info)})
        raise exc


async def get_object(ctx: Ctx, head: bool = False) -> Response:
    part = None
    if "partNumber" in ctx.query:
        raw = ctx.query["partNumber"]
        part = uint(raw)
        if part is None or not 1 <= part <= 10_000:
            raise S3Error("InvalidArgument", "Part number must be an integer between 1 and "
                          "10000, inclusive", ArgumentName="partNumber", ArgumentValue=raw[:20])
        if "range" in ctx.headers:
            raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber "
                          "query parameter")
    version = ctx.query.get("versionId")
    for _ in range(3):  # the object may be replaced between the lookup and the open
        info = await ctx.store.get_object(ctx.bucket, ctx.key, version)
        key = data_key(ctx, info)
        check_conditions(info, ctx.headers.get)
        rng = byte_range(ctx.headers.get("range"), info.size)
        if part is not None:
            rng = info.part_range(part) if info.parts or part > 1 else None
        start, end = rng if rng else (0, info.size - 1)
        wanted = ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
        headers = object_headers(info, checksum=rng is None and wanted)
        if rng and wanted:
            headers.update(part_checksum(info, start, end))
        if not head:
            headers.update({h: ctx.query[q] for q, h in OVERRIDES.items() if q in ctx.query})
        headers["content-length"] = str(end - start + 1)
        if rng:
            headers["content-range"] = f"bytes {start}-{end}/{info.size}"
        if part is not None and info.parts:
            headers["x-amz-mp-parts-count"] = str(len(info.parts["sizes"]))
        status = 206 if rng else 200
        if head:
            return Response(status_code=status, headers=headers)
        try:
            body = await ctx.store.blobs.open(info.blob, start, end)
        except FileNotFoundError:
            continue
        if key is not None:
            body = sse.decrypting(body, key, sse.nonce_of(info.headers), start)
        return StreamingResponse(body, status_code=status, headers=headers)
    raise S3Error("NoSuchKey", "The specified key does not exist.", Key=ctx.key)


def part_checksum(info: ObjectInfo, start: int, end: int) -> dict[str, str]:
    """The checksum of bytes [start, end] when they are exactly one part (`partNumber`, or a
    range on a part's bounds; a single-part object's one part is all of it), as S3 answers;
    any other range has none (a whole object's checksum would not match the bytes sent)."""
    c = info.checksum
    if not c:
        return {}
    if not info.parts:
        if (start, end) != (0, info.size - 1):
            return {}
        return {f"x-amz-checksum-{c['algorithm']}": c["value"], "x-amz-checksum-type": c["type"]}
    sums = info.parts.get("checksums") or []
    first = 0
    for n, size in enumerate(info.parts["sizes"]):
        if first == start:
            value = sums[n].get(c["algorithm"]) if n < len(sums) else None
            if first + size - 1 != end or not value:
                return {}
            return {f"x-amz-checksum-{c['algorithm']}": value, "x-amz-checksum-type": c["type"]}
        if first > start:
            break
        first += size
    return {}


def data_key(ctx: Ctx, info: ObjectInfo) -> bytes | None:
    """The key that decrypts `info`'s content (None: stored as sent), checking the SSE-C key
    the request gives (stores/sse.py)."""
    if not sse.encrypted(info.headers):
        encryption.requested(ctx.headers.items(), ctx.query.items())  # a malformed key: 400
    return sse.object_key(info.headers, ctx.store.sse_key or b"",
                          encryption.requested(ctx.headers.items(), ctx.query.items()))


async def head_object(ctx: Ctx) -> Response:
    return await get_object(ctx, head=True)


async def delete_object(ctx: Ctx) -> Response:
    [done] = await ctx.store.delete_objects(ctx.bucket, [(ctx.key, ctx.query.get("versionId"))],
                                            ctx.origin())
    headers = {}
    if done.version != "null" or "versionId" in ctx.query or done.created:
        headers["x-amz-version-id"] = done.version
    if done.marker:
        headers["x-amz-delete-marker"] = "true"
    return Response(status_code=204, headers=headers)


async def delete_objects(ctx: Ctx) -> Response:
    payload = Payload(ctx.request, ctx.auth, limit=MAX_XML)
    if payload.md5 is None and not payload.declared:
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 "
                      "or x-amz-checksum-*")
    root = parse(await payload.read(MAX_XML), "Delete")
    quiet = text(root, "Quiet", "false").strip().lower() == "true"
    objects = root.findall("Object")
    if not 1 <= len(objects) <= 1000:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                      "validate against our published schema (1 to 1000 Object elements)")
    keys: list[tuple[str, str | None]] = []
    errors = []
    for node in objects:
        key = text(node, "Key")
        version = node.find("VersionId")
        vid = (version.text or "").strip() if version is not None else None
        try:
            check_key(key)
            if vid is not None:
                check_version_id(vid)
        except S3Error as exc:
            errors.append(wrap("Error", el("Key", key), el("VersionId", vid),
                               el("Code", exc.code), el("Message", exc.message)))
            continue
        keys.append((key, vid))
    done = await ctx.store.delete_objects(ctx.bucket, keys, ctx.origin())
    deleted = [] if quiet else [
        wrap("Deleted", el("Key", d.key),
             el("VersionId", d.version if not d.created else None),
             el("DeleteMarker", True if d.marker else None),
             el("DeleteMarkerVersionId", d.version if d.created else None))
        for d in done]
    return xml_response("DeleteResult", *deleted, *errors)


async def copy_object(ctx: Ctx) -> Response:
    src_bucket, src_key, src_version = copy_source(ctx)
    src = await ctx.store.get_object(src_bucket, src_key, src_version)
    source_key = sse.object_key(src.headers, ctx.store.sse_key or b"", None)  # SSE-C: refused
    wanted = encryption.requested(ctx.headers.items(), ctx.query.items())  # SSE-S3 (SSE-C:
    encrypt, sealed = None, {}  # refused) of a plain source: the copy is written encrypted
    if wanted is not None and source_key is None:
        if ctx.store.sse_key is None:
            raise S3Error("NotImplemented", "Server-side encryption is not set up on this node")
        nonce = sse.new_nonce()
        sealed = wanted.headers(nonce, ctx.store.sse_key)
        encrypt = sse.encryptor(ctx.store.sse_key, nonce)
    check_conditions(src, ctx.headers.get, "x-amz-copy-source-")
    directive = ctx.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.",
                      ArgumentName="x-amz-metadata-directive")
    if ((src_bucket, src_key) == (ctx.bucket, ctx.key) and directive == "COPY"
            and src_version is None and encrypt is None):  # (an older version: restores it)
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to "
                      "copy an object to itself without changing the object's metadata, storage "
                      "class, website redirect location or encryption attributes.")
    headers = stored_headers(ctx.request) if directive == "REPLACE" else None
    if encrypt is not None:
        headers = {**(src.headers if headers is None else headers), **sealed}
    elif headers is not None:  # the content stays as it is stored, and so its encryption
        headers.update((k, v) for k, v in src.headers.items()
                       if k.startswith((sse.PRIVATE, sse.SSE)))
    info = await ctx.store.copy_object(src, ctx.bucket, ctx.key, headers, ctx.origin(),
                                       encrypt=encrypt)
    sums = {info.checksum["algorithm"]: info.checksum["value"]} if info.checksum else {}
    reply = version_headers(info)
    if source_key is not None or encrypt is not None:
        reply[sse.SSE] = "AES256"
    if src.version != "null" or src_version is not None:
        reply["x-amz-copy-source-version-id"] = src.version
    return xml_response("CopyObjectResult", el("LastModified", iso(info.modified)),
                        el("ETag", quoted(info.etag)),
                        *(el(f"Checksum{a.upper()}", v) for a, v in sums.items()),
                        el("ChecksumType", "FULL_OBJECT" if sums else None), headers=reply)
