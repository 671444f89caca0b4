"""What a function's scoped key may do: read = Get/Head/List of objects in its `:read` buckets;
write = Put, Delete, DeleteObjects, multipart and the destination of a copy in its `:write`
buckets (a copy's source needs read). ListBuckets answers with the scoped buckets only.
Everything else (creating or deleting buckets, notification settings) is denied.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.datastructures import Headers

from ...control.function_keys import Scope
from ...stores.s3errors import S3Error

# (method, level, subresource) → the access it needs; "" level is the service (ListBuckets)
NEEDS = {
    ("GET", "", ""): "list",
    ("HEAD", "b", ""): "read", ("GET", "b", ""): "read", ("GET", "b", "location"): "read",
    ("GET", "o", ""): "read", ("HEAD", "o", ""): "read",
    ("PUT", "o", ""): "write", ("DELETE", "o", ""): "write", ("POST", "b", "delete"): "write",
    ("GET", "b", "uploads"): "write", ("POST", "o", "uploads"): "write",
    ("PUT", "o", "uploadId"): "write", ("POST", "o", "uploadId"): "write",
    ("DELETE", "o", "uploadId"): "write", ("GET", "o", "uploadId"): "write",
}


def _denied(function: str, why: str) -> S3Error:
    return S3Error("AccessDenied", f"Access Denied: function {function}'s key {why}")


def require(scope: Scope, bucket: str, need: str) -> None:
    """Raise AccessDenied unless the scope may `need` (read or write) the bucket."""
    if not scope.allows(bucket, need):
        raise _denied(scope.function, f"may not {need} bucket {bucket} (dayfly.toml `buckets` "
                      f"declares: {', '.join(f'{b}:{m}' for b, m in scope.buckets.items())})")


def check(scope: Scope, op: tuple[str, str, str], bucket: str, headers: Headers) -> None:
    """Raise AccessDenied unless the scope allows the operation on the bucket."""
    need = NEEDS.get(op)
    if need is None:
        raise _denied(scope.function, "may only read and write objects")
    if need == "list":
        return
    require(scope, bucket, need)
    if op[0] == "PUT" and "x-amz-copy-source" in headers:
        source = unquote(headers["x-amz-copy-source"].partition("?")[0]).lstrip("/")
        source = source.partition("/")[0]
        if not scope.allows(source, "read"):
            raise _denied(scope.function, f"may not read bucket {source} (the copy's source)")
