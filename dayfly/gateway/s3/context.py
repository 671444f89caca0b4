"""What every S3 operation handler gets (`Ctx`), and the header conventions they share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request

from ...control.function_keys import Scope
from ...numbers import uint
from ...stores.objects import ObjectInfo, ObjectStore, Origin, check_version_id
from ...stores.s3errors import S3Error
from .sigv4 import Auth

KEPT_HEADERS = ("content-type", "content-encoding", "content-disposition", "content-language",
                "cache-control", "expires")
MAX_USER_METADATA = 2048  # bytes of x-amz-meta-* names and values, as S3


@dataclass(slots=True)
class Ctx:
    """One authenticated S3 request, addressed path-style to /bucket/key."""

    request: Request
    auth: Auth
    store: ObjectStore
    bucket: str
    key: str
    query: dict[str, str]
    request_id: str
    scope: Scope | None = None  # a function's key: what it may touch (None: everything)
    triggers: Any = None  # the node's BucketTriggers (notification settings)
    principal: str | None = None  # the user who signed (None: anonymous); access.py
    access: Any = None  # the node's AccessStore (owners, ACLs, policies, CORS rules)
    access_keys: Any = None  # the KeyStore, and function keys' scopes by key id: for
    key_scopes: Any = None  # POST Object, which authenticates its form itself (post.py)

    @property
    def headers(self):
        return self.request.headers

    def origin(self) -> Origin:
        client = self.request.client
        return Origin(self.request_id, client.host if client else "", self.auth.key_id)

    def int_param(self, name: str, default: int, low: int, high: int | None = None) -> int:
        """A query parameter as an int in [low, high]; above high is capped (as S3's max-keys)."""
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        value = uint(raw.removeprefix("-"))
        if value is None or (raw.startswith("-") and value) or value < low:
            raise S3Error("InvalidArgument", f"{name} must be an integer >= {low}",
                          ArgumentName=name, ArgumentValue=raw[:64])
        return value if high is None else min(value, high)


def stored_headers(request: Request) -> dict[str, str]:
    """The headers S3 keeps with an object: standard ones and x-amz-meta-* (user metadata)."""
    return kept_headers(request.headers.items())


def kept_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`stored_headers` of (lower-case name, value) pairs, however they arrived."""
    out: dict[str, str] = {}
    meta_size = 0
    for name, value in pairs:
        if name.startswith("x-amz-meta-"):
            meta_size += len(name) - 11 + len(value.encode())
            out[name] = value
        elif name in KEPT_HEADERS:
            out[name] = value
    enc = [e.strip() for e in out.get("content-encoding", "").split(",")
           if e.strip() and e.strip() != "aws-chunked"]
    if enc:
        out["content-encoding"] = ",".join(enc)
    else:
        out.pop("content-encoding", None)
    if meta_size > MAX_USER_METADATA:
        raise S3Error("MetadataTooLarge", "Your metadata headers exceed the maximum allowed "
                      "metadata size.", Size=str(meta_size), MaxSizeAllowed=str(MAX_USER_METADATA))
    return out


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def quoted(etag: str) -> str:
    return f'"{etag}"'


def object_headers(info: ObjectInfo, checksum: bool) -> dict[str, str]:
    """Response headers describing an object (GetObject, HeadObject)."""
    headers = {"etag": quoted(info.etag), "last-modified": http_date(info.modified),
               "accept-ranges": "bytes", "content-type": "binary/octet-stream"}
    headers.update((k, v) for k, v in info.headers.items() if not k.startswith("x-dayfly-"))
    headers.update(version_headers(info))
    if checksum and info.checksum:
        headers[f"x-amz-checksum-{info.checksum['algorithm']}"] = info.checksum["value"]
        headers["x-amz-checksum-type"] = info.checksum["type"]
    return headers


def checksum_headers(sums: dict[str, str], kind: str = "FULL_OBJECT") -> dict[str, str]:
    out = {f"x-amz-checksum-{alg}": value for alg, value in sums.items()}
    if sums:
        out["x-amz-checksum-type"] = kind
    return out


def checksum_elements(checksum: dict[str, str] | None) -> list[tuple[str, str]]:
    """XML elements for an object's checksum: ChecksumCRC32 etc. and ChecksumType."""
    if not checksum:
        return []
    return [(f"Checksum{checksum['algorithm'].upper()}", checksum["value"]),
            ("ChecksumType", checksum["type"])]


def copy_source(ctx: Ctx) -> tuple[str, str, str | None]:
    """(bucket, key, version id or None) from x-amz-copy-source: `[/]bucket/key[?versionId=]`,
    URL-encoded."""
    raw = ctx.headers.get("x-amz-copy-source", "")
    path, _, query = raw.partition("?")
    bucket, _, key = unquote(path, errors="strict").lstrip("/").partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: "
                      "sourcebucket/sourcekey", ArgumentName="x-amz-copy-source")
    if query and not query.startswith("versionId="):
        raise S3Error("InvalidArgument", "Invalid version id specified")
    version = unquote(query[10:]) or None
    if version is not None:
        check_version_id(version)
    return bucket, key, version


def version_headers(info: ObjectInfo) -> dict[str, str]:
    """x-amz-version-id for a version of a versioned bucket, as S3: a null version read from a
    bucket with versioning (enabled or suspended) is named 'null'; a write to a suspended
    bucket (a null version) and anything in an unversioned bucket are not named."""
    if info.version != "null" or info.versioning:
        return {"x-amz-version-id": info.version}
    return {}


def byte_range(spec: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for `bytes=a-b`, `bytes=a-`, `bytes=-n`; None for no/odd range."""
    if not spec or not spec.startswith("bytes=") or "," in spec:
        return None  # S3 ignores ranges it does not understand, and multiple ranges
    first, sep, last = spec[6:].strip().partition("-")
    a, b = uint(first, 64), uint(last, 64)
    if (not sep or (first and a is None) or (last and b is None) or not (first or last)
            or (a is not None and b is not None and b < a)):
        return None
    if a is not None:
        if a >= size:
            _unsatisfiable(size)
        return a, min(b, size - 1) if b is not None else size - 1
    assert b is not None
    if b == 0 or size == 0:
        _unsatisfiable(size)
    return max(0, size - b), size - 1


def _unsatisfiable(size: int) -> None:
    raise S3Error("InvalidRange", "The requested range is not satisfiable",
                  ActualObjectSize=str(size))
