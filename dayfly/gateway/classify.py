"""What a request is, decided once: the route family it goes to and the credential it carries.

The front door (`origin.py`), auth (`auth.py`), the invoke fast path (`fastpath.py`) and the
S3 dispatch (`s3/dispatch.py`) all read this one decision, memoised in the ASGI scope, so what
auth lets through as "S3" is exactly what goes to the S3 endpoint, which verifies its
signature. (Two separate tests of "is this S3" once let a tokenless invoke through.)

A request is S3's when it carries a SigV4 credential scoped to service `s3`: in its
Authorization header, or, without one, in a presigned URL's `X-Amz-Credential`, read the way
`s3/sigv4.py` reads them (header first; query keys and values percent-decoded; the last
`X-Amz-Credential` wins).
"""

from __future__ import annotations

import enum
from typing import NamedTuple
from urllib.parse import parse_qs, unquote_to_bytes

from starlette.types import Scope

KEY = "dayfly.route"
OPEN_PATHS = frozenset({"/", "/ui", "/healthz", "/openapi.json", "/favicon.ico"})
INVOKE_PREFIX, INVOKE_SUFFIX = "/2015-03-31/functions/", "/invocations"
STREAM_PREFIX, STREAM_SUFFIX = "/2021-11-15/functions/", "/response-streaming-invocations"
INGEST_PREFIX = "/dayfly/v1/ingest/s3/"
_SIGV4 = "AWS4-HMAC-SHA256"
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
    if form in (Form.SIGV4_HEADER, Form.SIGV4_QUERY) and service == "s3":
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
    return Route(Family.API, form, key, service)


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
        if alg != _SIGV4:
            return Form.OTHER, None, None
        fields = dict(p.strip().partition("=")[::2] for p in rest.split(","))
        key, service = _scope_of(fields.get("Credential", ""))
        return Form.SIGV4_HEADER, key, service
    raw: bytes = scope.get("query_string", b"")
    if b"Credential" not in raw and b"%" not in raw:
        return Form.NONE, None, None  # the common case: no presigned URL, no parsing
    found = None
    for part in raw.split(b"&"):
        k, _, v = part.partition(b"=")
        if unquote_to_bytes(k) == b"X-Amz-Credential":
            found = unquote_to_bytes(v)
    if found is None:
        return Form.NONE, None, None
    key, service = _scope_of(found.decode("utf-8", "replace"))
    return Form.SIGV4_QUERY, key, service


def _scope_of(credential: str) -> tuple[str | None, str | None]:
    """Key id and service of `KEY/DATE/REGION/SERVICE/aws4_request`."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return (parts[0] or None), None
    return (parts[0] or None), parts[3]
