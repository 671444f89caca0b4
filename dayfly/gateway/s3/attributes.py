"""GetObjectAttributes: an object's ETag, checksum, parts, storage class and size in one call."""

from __future__ import annotations

from starlette.responses import Response

from ...numbers import uint
from ...stores.s3errors import S3Error
from .context import Ctx, http_date, version_headers
from .objects import check_conditions, data_key
from .xml import el, wrap, xml_response

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")


def _header_int(ctx: Ctx, name: str, default: int) -> int:
    raw = ctx.headers.get(name)
    if raw is None:
        return default
    value = uint(raw.strip())
    if value is None:
        raise S3Error("InvalidArgument", f"{name} must be a non-negative integer",
                      ArgumentName=name, ArgumentValue=raw[:20])
    return value


async def get_attributes(ctx: Ctx) -> Response:
    asked = [a.strip() for a in ctx.headers.get("x-amz-object-attributes", "").split(",")
             if a.strip()]
    if not asked:
        raise S3Error("InvalidArgument", "The x-amz-object-attributes header specifying the "
                      "attributes to be retrieved is either missing or empty",
                      ArgumentName="x-amz-object-attributes")
    for a in asked:
        if a not in ATTRIBUTES:
            raise S3Error("InvalidArgument", "Invalid attribute name specified.",
                          ArgumentName="x-amz-object-attributes", ArgumentValue=a[:64])
    info = await ctx.store.get_object(ctx.bucket, ctx.key, ctx.query.get("versionId"))
    data_key(ctx, info)  # SSE-C: the object's key must be given
    check_conditions(info, ctx.headers.get)
    out = []
    if "ETag" in asked:
        out.append(el("ETag", info.etag))
    c = info.checksum
    if "Checksum" in asked and c:
        out.append(wrap("Checksum", el(f"Checksum{c['algorithm'].upper()}", c["value"]),
                        el("ChecksumType", c["type"])))
    if "ObjectParts" in asked and info.parts:
        marker = _header_int(ctx, "x-amz-part-number-marker", 0)
        limit = min(_header_int(ctx, "x-amz-max-parts", 1000), 1000)
        sizes, sums = info.parts["sizes"], info.parts.get("checksums") or [{}] * len(
            info.parts["sizes"])
        numbers = list(range(marker + 1, len(sizes) + 1))
        page = numbers[:limit]
        parts = [wrap("Part", el("PartNumber", n), el("Size", sizes[n - 1]),
                      *(el(f"Checksum{a.upper()}", v) for a, v in sums[n - 1].items()))
                 for n in page]
        out.append(wrap("ObjectParts", el("PartsCount", len(sizes)),
                        el("PartNumberMarker", marker),
                        el("NextPartNumberMarker", page[-1] if page else marker),
                        el("MaxParts", limit), el("IsTruncated", len(numbers) > limit),
                        *parts))
    if "StorageClass" in asked:
        out.append(el("StorageClass", "STANDARD"))
    if "ObjectSize" in asked:
        out.append(el("ObjectSize", info.size))
    return xml_response("GetObjectAttributesResponse", *out,
                        headers={"last-modified": http_date(info.modified),
                                 **version_headers(info)})
