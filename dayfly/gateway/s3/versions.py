"""Bucket versioning: Get/PutBucketVersioning and ListObjectVersions."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from ...stores.objects import ObjectInfo, check_version_id
from ...stores.s3errors import S3Error
from .context import Ctx, quoted
from .payload import Payload
from .xml import el, iso, parse, text, wrap, xml_response

OWNER = wrap("Owner", el("ID", "dayfly"), el("DisplayName", "dayfly"))


async def get_versioning(ctx: Ctx) -> Response:
    state, _ = await ctx.store.bucket_settings(ctx.bucket)
    return xml_response("VersioningConfiguration", el("Status", state or None))


async def put_versioning(ctx: Ctx) -> Response:
    body = await Payload(ctx.request, ctx.auth, limit=64 * 1024).read(64 * 1024)
    root = parse(body, "VersioningConfiguration")
    state = text(root, "Status", "").strip()
    if state not in ("Enabled", "Suspended"):
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                      "validate against our published schema (Status: Enabled or Suspended)")
    if text(root, "MfaDelete", "Disabled").strip() != "Disabled":
        raise S3Error("NotImplemented", "MFA Delete is not implemented")
    await ctx.store.set_versioning(ctx.bucket, state)
    return Response()


def _version(info: ObjectInfo, latest: bool, enc) -> str:
    common = (el("Key", enc(info.key)), el("VersionId", info.version), el("IsLatest", latest),
              el("LastModified", iso(info.modified)))
    if info.marker:
        return wrap("DeleteMarker", *common, OWNER)
    c = info.checksum or {}
    return wrap("Version", *common, el("ETag", quoted(info.etag)), el("Size", info.size),
                el("StorageClass", "STANDARD"), OWNER,
                el("ChecksumAlgorithm", c.get("algorithm", "").upper() or None),
                el("ChecksumType", c.get("type")))


async def list_versions(ctx: Ctx) -> Response:
    """ListObjectVersions: every version and delete marker, by key, newest first."""
    q = ctx.query
    encoding = q.get("encoding-type")
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type")
    enc = (lambda s: quote(s, safe="/")) if encoding else (lambda s: s)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, version_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
    if version_marker:
        if not key_marker:
            raise S3Error("InvalidArgument", "A version-id marker cannot be specified without "
                          "a key marker.", ArgumentName="version-id-marker")
        check_version_id(version_marker)
    max_keys = ctx.int_param("max-keys", 1000, 0, 1000)
    page = await ctx.store.list_versions(ctx.bucket, prefix=prefix, delimiter=delimiter,
                                         key_marker=key_marker, version_marker=version_marker,
                                         max_keys=max_keys)
    head = [el("Name", ctx.bucket), el("Prefix", enc(prefix)), el("KeyMarker", enc(key_marker)),
            el("VersionIdMarker", version_marker), el("MaxKeys", max_keys),
            el("Delimiter", enc(delimiter) if delimiter else None),
            el("EncodingType", encoding), el("IsTruncated", page.truncated)]
    if page.truncated and page.next_key is not None:
        head += [el("NextKeyMarker", enc(page.next_key)),
                 el("NextVersionIdMarker", page.next_version)]
    rows = [_version(ObjectInfo.of(r), latest, enc) for r, latest in page.rows]
    prefixes = [wrap("CommonPrefixes", el("Prefix", enc(p))) for p in page.prefixes]
    return xml_response("ListVersionsResult", *head, *rows, *prefixes)
