"""What a function's scoped key may do: read = Get/Head/List of objects in its `:read` buckets;
write = Put, Delete, DeleteObjects, multipart and the destination of a copy in its `:write`
buckets (a copy's source needs read). ListBuckets answers with the scoped buckets only.
Everything else (creating or deleting buckets, notification settings) is denied.

Below that: which user may do what on whose bucket (`authorize`): the bucket's owner, its
policy (`parse_policy`) and canned ACLs. A function's key acts as the default user, within
its scope.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.datastructures import Headers

from ...control.bucket_access import BucketAccess
from ...control.function_keys import Scope
from ...control.keys import USER_RE
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


# Users, ACLs and bucket policies (docs/security.md, "S3 access"). Each operation needs one
# policy action on the bucket or an object; an operation not named here (and the policy
# operations) is the bucket owner's alone.
ACTIONS = {
    "head_bucket": "s3:ListBucket", "list_objects": "s3:ListBucket",
    "get_location": "s3:GetBucketLocation", "list_uploads": "s3:ListBucketMultipartUploads",
    "get_object": "s3:GetObject", "head_object": "s3:GetObject",
    "put_object": "s3:PutObject", "create_upload": "s3:PutObject", "upload_part": "s3:PutObject",
    "complete_upload": "s3:PutObject", "post_object": "s3:PutObject",
    "abort_upload": "s3:AbortMultipartUpload", "list_parts": "s3:ListMultipartUploadParts",
    "delete_object": "s3:DeleteObject", "delete_objects": "s3:DeleteObject",
    "delete_bucket": "s3:DeleteBucket",
    "get_notification": "s3:GetBucketNotification",
    "put_notification": "s3:PutBucketNotification",
    "get_bucket_acl": "s3:GetBucketAcl", "put_bucket_acl": "s3:PutBucketAcl",
    "get_object_acl": "s3:GetObjectAcl", "put_object_acl": "s3:PutObjectAcl",
    "get_bucket_cors": "s3:GetBucketCORS", "put_bucket_cors": "s3:PutBucketCORS",
    "delete_bucket_cors": "s3:PutBucketCORS",
    "get_public_access_block": "s3:GetBucketPublicAccessBlock",
    "put_public_access_block": "s3:PutBucketPublicAccessBlock",
    "delete_public_access_block": "s3:PutBucketPublicAccessBlock",
}
OWN_CHECKS = frozenset({"list_buckets", "create_bucket", "post_object"})  # settings.py, post.py
CANNED = {"private": "private", "public-read": "public-read",
          "authenticated-read": "authenticated-read",
          # objects belong to their bucket's owner here, so these grant nothing more
          "bucket-owner-read": "private", "bucket-owner-full-control": "private"}
S3_CANNED = frozenset({*CANNED, "public-read-write", "aws-exec-read", "log-delivery-write"})
PUBLIC_ACLS = frozenset({"public-read", "authenticated-read"})
MAX_POLICY = 20 * 1024
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def access_denied() -> S3Error:
    return S3Error("AccessDenied", "Access Denied")


def canned(value: str | None) -> str:
    """The canned ACL an x-amz-acl value (or a form's `acl`) names; NotImplemented for others."""
    if value is None:
        return "private"
    acl = CANNED.get(value.strip())
    if acl is None and value.strip() not in S3_CANNED:
        raise S3Error("InvalidArgument", f"{value[:40]!r} is not a canned ACL",
                      ArgumentName="x-amz-acl", ArgumentValue=value[:40])
    if acl is None:
        raise S3Error("NotImplemented", f"The canned ACL {value[:40]!r} is not implemented "
                      "(private, public-read, authenticated-read, bucket-owner-read and "
                      "bucket-owner-full-control are)")
    return acl


def check_public_acl(bucket: BucketAccess, acl: str) -> None:
    """BlockPublicAcls refuses a public ACL on the bucket or its objects."""
    if acl in PUBLIC_ACLS and bucket.blocks("BlockPublicAcls"):
        raise S3Error("AccessDenied", "Access Denied: the bucket's public access block "
                      "(BlockPublicAcls) refuses public ACLs")


def check_acl_headers(headers: Headers) -> None:
    """Grants by header (x-amz-grant-*) are refused: only canned ACLs are implemented."""
    for name in headers:
        if name.startswith("x-amz-grant-"):
            raise S3Error("NotImplemented", f"{name[:40]} is not implemented: use a canned ACL "
                          "(x-amz-acl) or a bucket policy")


class Statement:
    """One validated policy statement; patterns are compiled globs (`*`, `?`)."""

    __slots__ = ("actions", "allow", "objects", "principals", "public", "resources")

    def __init__(self, allow: bool, principals: frozenset[str] | None, actions: list[re.Pattern],
                 resources: list[str]) -> None:
        self.allow = allow
        self.principals = principals  # None: everyone, anonymous included ("*")
        self.actions = actions
        self.resources = [_glob(r) for r in resources]
        self.objects = any("/" in r for r in resources)  # names some of the bucket's objects
        self.public = principals is None

    def matches(self, principal: str | None, action: str, resource: str | None) -> bool:
        """Whether the statement applies; resource None: some object of the bucket, unknown
        which (DeleteObjects): a statement naming any object applies."""
        return ((self.principals is None or (principal is not None
                                             and principal in self.principals))
                and any(p.fullmatch(action) for p in self.actions)
                and (self.objects if resource is None
                     else any(p.fullmatch(resource) for p in self.resources)))


def _glob(pattern: str, flags: int = 0) -> re.Pattern:
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), flags)


def _malformed(why: str) -> S3Error:
    return S3Error("MalformedPolicy", why)


def _strings(value: Any, field: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(
            isinstance(v, str) and v for v in values):
        raise _malformed(f"{field} must be a string or a list of strings")
    return values


def _principals(value: Any) -> frozenset[str] | None:
    if value == "*":
        return None
    if not isinstance(value, dict) or set(value) != {"AWS"}:
        raise _malformed("Invalid principal in policy: use \"*\" or {\"AWS\": [user names or "
                         "arn:aws:iam::USER:root]}")
    names = set()
    for v in _strings(value["AWS"], "Principal.AWS"):
        if v == "*":
            return None
        m = re.fullmatch(r"arn:aws:iam::([^:]+):root", v)
        name = m.group(1) if m else v
        if not USER_RE.fullmatch(name):
            raise _malformed(f"Invalid principal in policy: {v[:80]!r}")
        names.add(name)
    return frozenset(names)


@lru_cache(maxsize=1024)
def parse_policy(text: str, bucket: str) -> tuple[Statement, ...]:
    """The statements of a bucket policy, or MalformedPolicy saying what is wrong."""
    if len(text.encode()) > MAX_POLICY:
        raise _malformed(f"Policies must be at most {MAX_POLICY} bytes")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _malformed("Policies must be valid JSON and the first byte must be '{'") from None
    if not isinstance(doc, dict):
        raise _malformed("Policies must be valid JSON and the first byte must be '{'")
    extra = set(doc) - {"Version", "Id", "Statement"}
    if extra:
        raise _malformed(f"Unknown field {sorted(extra)[0][:40]}")
    if doc.get("Version", "2012-10-17") not in ("2012-10-17", "2008-10-17"):
        raise _malformed("The policy must contain a valid version string")
    raw = doc.get("Statement")
    raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list) or not raw:
        raise _malformed("Missing required field Statement")
    out = []
    for st in raw:
        if not isinstance(st, dict):
            raise _malformed("Statement must be an object")
        unsupported = set(st) & {"Condition", "NotPrincipal", "NotAction", "NotResource"}
        if unsupported:
            raise _malformed(f"dayfly does not implement {sorted(unsupported)[0]} in bucket "
                             "policies (Sid, Effect, Principal, Action, Resource are)")
        extra = set(st) - {"Sid", "Effect", "Principal", "Action", "Resource"}
        if extra:
            raise _malformed(f"Unknown field {sorted(extra)[0][:40]}")
        if st.get("Effect") not in ("Allow", "Deny"):
            raise _malformed(f"Invalid effect: {str(st.get('Effect'))[:40]}")
        if "Principal" not in st:
            raise _malformed("Missing required field Principal")
        actions = _strings(st.get("Action"), "Action")
        for a in actions:
            if not re.fullmatch(r"s3:[A-Za-z*?]+", a) and a != "*":
                raise _malformed(f"Policy has invalid action: {a[:80]}")
        resources = _strings(st.get("Resource"), "Resource")
        for r in resources:
            name = r.removeprefix("arn:aws:s3:::").partition("/")[0]
            if not r.startswith("arn:aws:s3:::") or not _glob(name).fullmatch(bucket):
                raise _malformed(f"Policy has invalid resource: {r[:120]} (this bucket's are "
                                 f"arn:aws:s3:::{bucket} and arn:aws:s3:::{bucket}/KEY)")
        out.append(Statement(st["Effect"] == "Allow", _principals(st["Principal"]),
                             [_glob(a, re.IGNORECASE) for a in actions], resources))
    return tuple(out)


def is_public(statements: tuple[Statement, ...]) -> bool:
    return any(s.allow and s.public for s in statements)


def authorize(access: BucketAccess, object_acl: str, principal: str | None,
              operation: str, bucket: str, key: str) -> None:
    """Raise AccessDenied unless `principal` (None: anonymous) may do `operation` on the
    bucket (and key): an explicit Deny in the policy wins; then the owner may do anything;
    then an Allow of the policy; then a public ACL (bucket: listing; object: reading)."""
    owner = principal is not None and principal == access.owner
    action = ACTIONS.get(operation)
    if action is None:
        if owner:
            return
        raise access_denied()
    allowed = owner
    if access.policy:
        # DeleteObjects names its keys in its body: a Deny naming any object refuses it whole,
        # an Allow must name every object (`bucket/*`)
        many = operation == "delete_objects"
        resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "/*" if many else "")
        restrict = access.blocks("RestrictPublicBuckets")
        for st in parse_policy(access.policy, bucket):
            target = None if many and not st.allow else resource
            if not st.matches(principal, action, target) or (st.public and restrict
                                                            and st.allow):
                continue
            if not st.allow:
                raise access_denied()
            allowed = True
    if allowed:
        return
    if not access.blocks("IgnorePublicAcls"):
        acl = (access.acl if action == "s3:ListBucket" else
               object_acl if action == "s3:GetObject" else "private")
        if acl == "public-read" or (acl == "authenticated-read" and principal is not None):
            return
    raise access_denied()


def copy_source_of(header: str) -> tuple[str, str]:
    """(bucket, key) of an x-amz-copy-source value (`[/]bucket/key[?versionId=...]`)."""
    path = unquote(header.partition("?")[0]).lstrip("/")
    bucket, _, key = path.partition("/")
    return bucket, key
