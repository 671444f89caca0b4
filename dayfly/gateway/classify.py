"""What a request is, decided once: the route family it goes to and the credential it carries.

The front door (`origin.py`), auth (`auth.py`), the invoke fast path (`fastpath.py`) and the
S3 dispatch (`s3/dispatch.py`) all read this one decision, memoised in the ASGI scope, so what
auth lets through as "S3" is exactly what goes to the S3 endpoint, which verifies its
signature. (Two separate tests of "is this S3" once let a tokenless invoke through.)

A request is S3's when it carries a SigV4 credential scoped to service `s3`: in its
Authorization header, or, without one, in a presigned URL's `X-Amz-Credential`, read the way
`s3/sigv4.py` reads them (header first; query keys and values percent-decoded; the last
`X-Amz-Credential` wins). Two more kinds of request are S3's, so S3 answers them by its own
rules (docs/decisions/0003-s3-on-the-same-port.md):

- a Signature Version 2 credential (`Authorization: AWS KEY:SIG`, or `?AWSAccessKeyId=` with
  `Signature=`), whatever the path: no dayfly API ever took one; S3 refuses it by name;
- a request with no credential at all whose first path segment is a bucket name (S3's syntax)
  and none of dayfly's own (`S3_NOT_BUCKETS`: the API prefixes the routes table reserves, and
  the streaming invoke's): an anonymous S3 request (public objects, browser preflights, POST
  Object uploads). Routes and function URLs still come first for those (decision 10).
Anything else without a credential stays the API's (401, or the dashboard's open files).
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple
from urllib.parse import parse_qs, unquote_to_bytes

from starlette.types import Scope

from .routes_table import RESERVED

KEY = "dayfly.route"
OPEN_PATHS = frozenset({"/", "/ui", "/healthz", "/openapi.json", "/favicon.ico"})
INVOKE_PREFIX, INVOKE_SUFFIX = "/2015-03-31/functions/", "/invocations"
STREAM_PREFIX, STREAM_SUFFIX = "/2021-11-15/functions/", "/response-streaming-invocations"
INGEST_PREFIX = "/dayfly/v1/ingest/s3/"
_SIGV4 = "AWS4-HMAC-SHA256"
S3_NOT_BUCKETS = RESERVED | {"2021-11-15"}  # first segments that are never a bucket
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
NODE_SCHEME = "DAYFLY-NODE"  # a cluster node's credential (cluster/forward.py), invokes only


class Family(enum.Enum):
    """Where a request goes, and so who authenticates it."""

    OPEN = "open"  # /healthz, /openapi.json, the dashboard's files: nobody
    S3 = "s3"  # signed for s3: the S3 endpoint, by SigV4 with its access keys
    INGEST = "ingest"  # external stores' webhooks: their source's own token
    INVOKE = "invoke"  # POST /2015-03-31/functions/NAME/invocations: API token, or public
    # (and InvokeWithResponseStream, POST /2021-11-15/functions/NAME/response-streaming-invocations)
    API = "api"  # the Lambda and dayfly APIs, metrics, the dashboard's data: API token
    REFUSED = "refused"  # anything but S3 on the functions' S3 listener: 403


class Form(enum.Enum):
    """How a request carries a credential."""

    NONE = "none"
    BEARER = "bearer"  # Authorization: Bearer TOKEN
    SIGV4_HEADER = "sigv4-header"  # Authorization: AWS4-HMAC-SHA256 Credential=KEY/...
    SIGV4_QUERY = "sigv4-query"  # ?X-Amz-Credential=KEY/... (a presigned URL)
    NODE = "node"  # Authorization: DAYFLY-NODE node=...,mac=... (another node forwarding)
    SIGV2 = "sigv2"  # Authorization: AWS KEY:SIG, or ?AWSAccessKeyId=&Signature= (refused by S3)
    OTHER = "other"  # an Authorization header of another scheme


class Route(NamedTuple):  # a tuple: built on every request, cheaper than a frozen dataclass
    family: Family
    form: Form
    key: str | None = None  # the bearer token, the SigV4 access key id, or the node credential
    service: str | None = None  # the SigV4 scope's service: "s3", "lambda", ...
    name: str = ""  # for INVOKE: the function (maybe NAME:QUALIFIER) from the path
    qualifier: str | None = None  # for INVOKE: ?Qualifier= (its first value)
    stream: bool = False  # for INVOKE: InvokeWithResponseStream


def route(scope: Scope, function_s3: tuple[str, int] | None) -> Route:
    """The request's Route, computed on first use and kept in the scope."""
    found = scope.get(KEY)
    if found is None:
        found = scope[KEY] = classify(scope, function_s3)
    return found


def classify(scope: Scope, function_s3: tuple[str, int] | None) -> Route:
    form, key, service = credential(scope)
    if (form in (Form.SIGV4_HEADER, Form.SIGV4_QUERY) and service == "s3") or form is Form.SIGV2:
        return Route(Family.S3, form, key, service)
    if function_s3 is not None and tuple(scope.get("server") or ()) == function_s3:
        return Route(Family.REFUSED, form, key, service)  # told by the listening socket
    path: str = scope.get("path", "")
    if scope.get("method") == "POST" and path.endswith((INVOKE_SUFFIX, STREAM_SUFFIX)):
        stream = path.endswith(STREAM_SUFFIX)
        prefix, suffix = (STREAM_PREFIX, STREAM_SUFFIX) if stream else (INVOKE_PREFIX,
                                                                         INVOKE_SUFFIX)
        name = path[len(prefix):-len(suffix)] if path.startswith(prefix) else ""
        if name and "/" not in name:
            query = scope.get("query_string", b"")
            qualifier = (parse_qs(query.decode("latin-1")).get("Qualifier", [None])[0]
                         if query else None)
            return Route(Family.INVOKE, form, key, service, name, qualifier, stream)
    if path in OPEN_PATHS or path.startswith("/ui/"):
        return Route(Family.OPEN, form, key, service)
    if path.startswith(INGEST_PREFIX):
        return Route(Family.INGEST, form, key, service)
    if form is Form.NONE and anonymous_s3(path):
        return Route(Family.S3, form, key, service)
    return Route(Family.API, form, key, service)


def anonymous_s3(path: str) -> bool:
    """Whether an unsigned request to `path` is S3's: `/bucket[/key]`, the bucket none of
    dayfly's own first segments."""
    first = path[1:].partition("/")[0]
    return first not in S3_NOT_BUCKETS and _BUCKET.fullmatch(first) is not None


def credential(scope: Scope) -> tuple[Form, str | None, str | None]:
    """The credential's form, its token or access key id, and its SigV4 service."""
    # every Authorization header, joined as s3/sigv4.py joins them
    values = [" ".join(v.decode("latin-1").split()) for k, v in scope["headers"]
              if k == b"authorization"]
    header = ",".join(values)
    if header:
        if header[:7].lower() == "bearer ":
            return Form.BEARER, header[7:].strip(), None
        alg, _, rest = header.partition(" ")
        if alg.upper() == NODE_SCHEME:
            return Form.NODE, rest or None, None
        if alg == "AWS" and ":" in rest:
            return Form.SIGV2, rest.partition(":")[0] or None, None
        if alg != _SIGV4:
            return Form.OTHER, None, None
        fields = dict(p.strip().partition("=")[::2] for p in rest.split(","))
        key, service = _scope_of(fields.get("Credential", ""))
        return Form.SIGV4_HEADER, key, service
    raw: bytes = scope.get("query_string", b"")
    if b"Credential" not in raw and b"%" not in raw and b"Signature" not in raw:
        return Form.NONE, None, None  # the common case: no presigned URL, no parsing
    found = v2_key = None
    v2_signature = False
    for part in raw.split(b"&"):
        k, _, v = part.partition(b"=")
        name = unquote_to_bytes(k)
        if name == b"X-Amz-Credential":
            found = unquote_to_bytes(v)
        elif name == b"AWSAccessKeyId":
            v2_key = unquote_to_bytes(v).decode("utf-8", "replace")
        elif name == b"Signature":
            v2_signature = True
    if found is None:
        if v2_key is not None and v2_signature:
            return Form.SIGV2, v2_key or None, None
        return Form.NONE, None, None
    key, service = _scope_of(found.decode("utf-8", "replace"))
    return Form.SIGV4_QUERY, key, service


def _scope_of(credential: str) -> tuple[str | None, str | None]:
    """Key id and service of `KEY/DATE/REGION/SERVICE/aws4_request`."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return (parts[0] or None), None
    return (parts[0] or None), parts[3]
