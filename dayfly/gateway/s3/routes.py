"""The S3 ASGI app: verify the signature, pick the operation, answer errors in S3's XML.

An S3 operation is named by method, path depth (service, bucket or object) and a
"subresource" query parameter (?uploads, ?delete, ?uploadId, ...), not by the path alone.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ...control.bucket_access import AccessStore
from ...control.function_keys import Scope as KeyScope
from ...control.keys import KeyStore
from ...stores.objects import ObjectStore, check_version_id
from ...stores.s3errors import S3Error
from . import access, attributes, buckets, encryption, notifications, objects, uploads, versions
from .context import Ctx
from .cors import preflight, response_headers
from .settings import ACCESS_OPERATIONS, ACCESS_SUBRESOURCES
from .sigv4 import parse_query, verify
from .xml import error_response

log = logging.getLogger("dayfly.s3")

Handler = Callable[[Ctx], Awaitable[Response]]
SUBRESOURCES: tuple[str, ...]

# (method, level, subresource) -> handler; level: "" service, "b" bucket, "o" object
OPERATIONS: dict[tuple[str, str, str], Handler] = {
    ("GET", "", ""): buckets.list_buckets,
    ("PUT", "b", ""): buckets.create_bucket,
    ("DELETE", "b", ""): buckets.delete_bucket,
    ("HEAD", "b", ""): buckets.head_bucket,
    ("GET", "b", ""): buckets.list_objects,
    ("GET", "b", "location"): buckets.get_location,
    ("GET", "b", "notification"): notifications.get_notification,
    ("PUT", "b", "notification"): notifications.put_notification,
    ("GET", "b", "uploads"): uploads.list_uploads,
    ("GET", "b", "versioning"): versions.get_versioning,
    ("PUT", "b", "versioning"): versions.put_versioning,
    ("GET", "b", "versions"): versions.list_versions,
    ("GET", "o", "attributes"): attributes.get_attributes,
    ("POST", "b", "delete"): objects.delete_objects,
    ("PUT", "o", ""): objects.put_object,
    ("GET", "o", ""): objects.get_object,
    ("HEAD", "o", ""): objects.head_object,
    ("DELETE", "o", ""): objects.delete_object,
    ("POST", "o", "uploads"): uploads.create_upload,
    ("PUT", "o", "uploadId"): uploads.upload_part,
    ("POST", "o", "uploadId"): uploads.complete_upload,
    ("DELETE", "o", "uploadId"): uploads.abort_upload,
    ("GET", "o", "uploadId"): uploads.list_parts,
    # who may do what, CORS, POST Object; ListBuckets, Create/DeleteBucket with owners (these
    # replace the three above: settings.py wraps them)
    **ACCESS_OPERATIONS,
}
SUBRESOURCES = ("uploads", "uploadId", "delete", "location", "notification", "versioning",
                "versions", "attributes")
SUBRESOURCES += ACCESS_SUBRESOURCES
# parameters of the operations above; any other one names something not implemented
PARAMETERS = frozenset({
    *SUBRESOURCES, "list-type", "prefix", "delimiter", "max-keys", "continuation-token",
    "start-after", "encoding-type", "fetch-owner", "marker", "partNumber", "max-parts",
    "part-number-marker", "max-uploads", "key-marker", "upload-id-marker", "versionId", "x-id",
    "max-buckets", "bucket-region", "optional-object-attributes", "version-id-marker",
    "response-content-type", "response-content-language", "response-expires",
    "response-cache-control", "response-content-disposition", "response-content-encoding"})


def _split(raw_path: bytes) -> tuple[str, str]:
    """(bucket, key) from a path-style `/bucket/key` (the key is everything after the slash)."""
    bucket, _, key = raw_path.lstrip(b"/").partition(b"/")
    try:
        return unquote_to_bytes(bucket).decode(), unquote_to_bytes(key).decode()
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.") from None


class _Body:
    """The ASGI receive callable, noting whether the whole request body was read."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.done = False

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.done = True
        return message


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return True
    return False


class S3App:
    """The S3 endpoint of one node."""

    def __init__(self, store: ObjectStore, keys: KeyStore,
                 scopes: Callable[[str], KeyScope | None] | None = None,
                 triggers: object = None, access_store: AccessStore | None = None) -> None:
        self.store = store
        self.keys = keys
        self.scopes = scopes  # key id → a function key's scope (None: an operator's key)
        self.triggers = triggers
        self.access = access_store if access_store is not None else AccessStore(store.db)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = secrets.token_hex(8).upper()
        body = _Body(receive)
        try:
            response = await self._handle(Request(scope, body), request_id)
        except S3Error as exc:
            response = error_response(exc, scope["path"], request_id)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            response = error_response(S3Error("InternalError", "We encountered an internal "
                                              "error. Please try again."), scope["path"],
                                      request_id)
        response.headers["x-amz-request-id"] = request_id
        response.headers["x-amz-id-2"] = request_id
        response.headers.update(self._cors(scope))
        if not body.done and _has_body(scope):
            # answered before the body was read (an error, or a refused Expect: 100-continue):
            # the unread rest would be parsed as the next request, so this connection ends here
            response.headers["connection"] = "close"
        await response(scope, body, send)

    def _cors(self, scope: Scope) -> dict[str, str]:
        """The bucket's CORS headers for this response (none without Origin or a rule)."""
        if scope["method"] == "OPTIONS":
            return {}  # a preflight's are its answer's own
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        if origin is None:
            return {}
        bucket = (scope.get("raw_path") or scope["path"].encode()).lstrip(b"/").partition(b"/")[0]
        rules = self.access.get(bucket.decode("latin-1")).cors
        return response_headers(rules, origin, scope["method"])

    async def _handle(self, request: Request, request_id: str) -> Response:
        scope = request.scope
        pairs = parse_query(scope["query_string"])
        if scope["method"] == "OPTIONS":  # a browser's preflight: no credential, the CORS rules
            bucket = _split(scope.get("raw_path") or scope["path"].encode())[0]
            if bucket:
                return preflight(self.access.get(bucket).cors, request.headers)
        auth = verify(scope, pairs, self.keys.secret)
        query = dict(pairs)
        unknown = [k for k in query if k not in PARAMETERS and not k.startswith("X-Amz-")
                   and not encryption.named(k)]  # (encryption.check's to answer)
        if unknown:
            raise S3Error("NotImplemented", "A header or query you provided implies "
                          f"functionality that is not implemented: ?{unknown[0][:60]}")
        if "versionId" in query:
            check_version_id(query["versionId"])
        bucket, key = _split(scope.get("raw_path") or scope["path"].encode())
        level = "o" if key else "b" if bucket else ""
        sub = next((s for s in SUBRESOURCES if s in query), "")
        handler = OPERATIONS.get((scope["method"], level, sub))
        if handler is None:
            if any(op[:2] == (scope["method"], level) for op in OPERATIONS) or sub:
                raise S3Error("NotImplemented", "A header or query you provided implies "
                              "functionality that is not implemented.")
            raise S3Error("MethodNotAllowed", "The specified method is not allowed against this "
                          "resource.", Method=scope["method"][:16],
                          ResourceType="OBJECT" if key else "BUCKET" if bucket else "SERVICE")
        scope["dayfly.s3_operation"] = handler.__name__  # a metrics label (metrics/s3.py)
        encryption.check(request.headers.items(), pairs, handler.__name__,  # refused, never
                         "x-amz-copy-source" in request.headers)  # pretended
        grant = self.scopes(auth.key_id) if self.scopes is not None and auth.key_id else None
        if grant is not None:
            access.check(grant, (scope["method"], level, sub), bucket, request.headers)
        principal = self.keys.owner(auth.key_id) if auth.key_id else None
        ctx = Ctx(request, auth, self.store, bucket, key, query, request_id, grant,
                  self.triggers, principal, self.access, self.keys, self.scopes)
        return await self._authorized(handler, ctx)

    async def _authorized(self, handler: Handler, ctx: Ctx) -> Response:
        """Run `handler` if the caller may (access.authorize), with the object ACL it sets."""
        name = handler.__name__
        if name in access.OWN_CHECKS:  # ListBuckets, CreateBucket, POST Object: their own
            return await handler(ctx)
        known = self.access
        try:
            access.authorize(known.get(ctx.bucket), known.object_acl(ctx.bucket, ctx.key),
                             ctx.principal, name, ctx.bucket, ctx.key)
        except S3Error:
            await self.store.head_bucket(ctx.bucket)  # no such bucket: S3 says so, to anyone
            raise
        source = ctx.headers.get("x-amz-copy-source")
        if source is not None and name in ("put_object", "upload_part"):
            src_bucket, src_key = access.copy_source_of(source)
            access.authorize(known.get(src_bucket), known.object_acl(src_bucket, src_key),
                             ctx.principal, "get_object", src_bucket, src_key)
        if name in ("put_object", "create_upload"):
            access.check_acl_headers(ctx.headers)
            acl = access.canned(ctx.headers.get("x-amz-acl"))
            if name == "create_upload" and acl != "private":
                raise S3Error("NotImplemented", "x-amz-acl on a multipart upload is not "
                              "implemented: set it with PutObjectAcl once it is complete")
            access.check_public_acl(known.get(ctx.bucket), acl)
        response = await handler(ctx)
        if name == "put_object" and response.status_code < 300:
            # a new object (a copy too) is private (AccessStore.following, on its event); then
            # it gets this request's ACL
            await known.set_object_acl(ctx.bucket, ctx.key,
                                       access.canned(ctx.headers.get("x-amz-acl")))
        return response
