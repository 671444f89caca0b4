"""HTTP routes and function URLs as bare ASGI, in front of the origin guard: a request a route
or a function URL owns is served here, in this order, and never goes further:

1. which: requests signed for S3 and the functions' S3 listener are never a route's; a
   function URL by Host (`<fn>.<node name>`, `<fn>--<alias>.<node name>`) or by path
   (`/url/<fn>/...`), else a route at the root (`routes_table.Table.match`);
2. a method no route serves is a 405, a request line and headers over 10 KiB a 431 (API
   Gateway's limit); CORS preflights (OPTIONS with Access-Control-Request-Method) of a route
   or URL with CORS configured are answered here, without waking the function;
3. auth: `none`; `token` (a dayfly API token as `Authorization: Bearer`, nothing else);
   `jwt` (`jwt_auth.py`); a URL's AWS_IAM (SigV4 for service `lambda` with a dayfly access
   key, checked once the body is read): 401/403, the function never runs;
4. the route's rate limit (a token bucket on each node holding its share of the rate by live
   node count, `Share.rate`, which follows membership through `scheduler.reshare`: 429 +
   Retry-After);
5. the body, at most the route's `max_body` (413), read in full before anything runs;
6. the event (2.0, 1.0 or the function URL's), one invocation, the response mapped back
   (`routes_events.py`) or, when the function streams (a generator, a web app), written out
   piece by piece as it comes (`streaming.open_stream`: chunked transfer, SSE by its content
   type); CORS headers added, the status counted per route for /metrics.

Everything read on the way is memory: the table is rebuilt from the registry when its
`generation` changes (deploys, here or pushed from another node).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import socket
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ClientGone, DayflyError, TooManyRequests
from ..types import InvokeRequest
from . import routes_events as ev
from .classify import Family, Form, route
from .jwt_auth import JwtError, Verifier, authorizer
from .origin import host_name
from .request_ids import new_request_id
from .routes_table import Entry, Match, Table, url_id
from .s3 import sigv4
from .streaming import Streamed, open_stream

log = logging.getLogger("dayfly.gateway")

URL_PREFIX = "/url/"
MAX_HEADER_BYTES = 10 * 1024  # API Gateway's: request line and headers together
SERVED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_JSON = (b"content-type", b"application/json")


class Bucket:
    """A token bucket: `rps` tokens a second, at most `burst` saved up."""

    __slots__ = ("at", "burst", "rps", "tokens")

    def __init__(self, rps: float, burst: float) -> None:
        self.rps, self.burst, self.tokens, self.at = rps, burst, burst, time.monotonic()

    def take(self) -> float:
        """0 if a request may pass now, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rps)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rps


class HttpFront:
    """ASGI: serves routes and function URLs; passes every other request on unchanged."""

    def __init__(self, app: ASGIApp, platform: Any) -> None:
        self.app = app
        self.platform = platform
        self.registry = platform.registry
        self.function_s3 = platform.settings.function_s3
        self.jwt = Verifier()
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self._table, self._generation = Table(), object()
        machine = socket.gethostname().lower()
        self.own_names = frozenset({"localhost", machine, machine.split(".", 1)[0],
                                    host_name(platform.settings.host)})

    def table(self) -> Table:
        gen = getattr(self.registry, "generation", None)
        if gen is None:  # a registry without a change counter: look at every function
            gen = tuple((n, id(st.latest)) for n, st in self.registry.functions.items())
        if gen != self._generation:
            self._table, self._generation = Table.build(self.registry.functions), gen
            for c in self._table.conflicts:
                log.warning("route %s is not served: two nodes deployed it at once", c)
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        table = self.table()
        if not table.entries:
            await self.app(scope, receive, send)
            return
        found = self._find(scope, table)
        if found is None:
            await self.app(scope, receive, send)
            return
        m, path, domain = found
        await self._serve(scope, receive, send, m, path, domain)

    def _find(self, scope: Scope, table: Table) -> tuple[Match, str, str] | None:
        """The route or URL of the request, the path its event carries, and its domain."""
        if self.function_s3 is not None and tuple(scope.get("server") or ()) == self.function_s3:
            return None
        r = route(scope, self.function_s3)
        if r.family is Family.S3 and r.form is not Form.NONE:
            return None  # signed for S3: the S3 endpoint's, whatever its path (unsigned S3
            # requests to a path a route serves are the route's: decision 10)
        path: str = scope.get("path", "/")
        host = ""
        for k, v in scope["headers"]:
            if k == b"host":
                host = v.decode("latin-1")
                break
        name = host_name(host)
        if table.urls:
            if path.startswith(URL_PREFIX):
                uid, _, rest = path[len(URL_PREFIX):].partition("/")
                e = table.urls.get(uid.lower())
                if e is not None:
                    return Match(e), "/" + rest, name
            elif "." in name and name not in self.own_names and not _is_ip(name):
                e = table.urls.get(name.split(".", 1)[0])
                if e is not None:
                    return Match(e), path, name
        method = scope["method"]
        if method == "OPTIONS":  # a preflight finds the route of the method it asks about
            asked = _header(scope, b"access-control-request-method")
            if asked:
                m = table.match(asked.upper(), path)
                if m is not None and m.entry.cors is not None:
                    return m, path, name
        m = table.match(method, path)
        return (m, path, name) if m is not None else None

    # -- serving -----------------------------------------------------------------------------

    async def _serve(self, scope: Scope, receive: Receive, send: Send, m: Match, path: str,
                     domain: str) -> None:
        e = m.entry
        label = e.key if e.kind == "route" else f"url:{url_id(e.function, e.qualifier)}"
        method = scope["method"]
        origin = _header(scope, b"origin")
        cors = e.cors
        streamed: Streamed | None = None
        out = ev.error()
        try:
            if method not in SERVED_METHODS:
                out = ev.error(405, f"method {method[:20]} is not served")
            elif _header_bytes(scope) > MAX_HEADER_BYTES:
                out = ev.error(431, f"Request Header Fields Too Large: the request line and "
                               f"headers may take at most {MAX_HEADER_BYTES} bytes",
                               [(b"connection", b"close")])
            elif (cors is not None and method == "OPTIONS" and origin is not None
                  and _header(scope, b"access-control-request-method")):
                out = _preflight(cors, origin, scope)
            else:
                ran = await self._run(scope, receive, m, path, domain, label)
                if ran is None:
                    return  # the caller hung up
                if isinstance(ran, Streamed):
                    streamed = ran
                else:
                    out = ran
        except DayflyError as exc:
            out = ev.error(exc.status, exc.message)
        except Exception as exc:
            log.exception("route %s of %s failed", label, e.function)
            out = ev.error(500, f"internal error ({type(exc).__name__})")
        if streamed is not None:  # its head and first piece are here; the rest as it comes
            try:
                await self._stream(send, streamed, e, label, cors, origin, scope)
            except OSError:  # the caller hung up mid-stream: the invocation was stopped
                log.debug("route %s: the caller left during a streamed response", label)
            return
        if cors is not None and origin is not None and method != "OPTIONS":
            out.headers.extend(_cors_headers(cors, origin))
        out.headers.append((b"apigw-requestid", scope.setdefault("dayfly.http_id",
                                                                  new_request_id()).encode()))
        self.platform.metrics.http_request(e.function, label, out.status)
        await send({"type": "http.response.start", "status": out.status,
                    "headers": [*out.headers, (b"content-length", str(len(out.body)).encode())]
                    if method != "HEAD" or not out.body else out.headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else out.body})

    async def _stream(self, send: Send, answer: Streamed, e: Entry, label: str,
                      cors: dict[str, Any] | None, origin: str | None, scope: Scope) -> None:
        """Write a streamed answer as it comes: chunked transfer (or SSE, by its content type)."""
        status, headers = ev.map_head(answer.head)
        if cors is not None and origin is not None:
            headers.extend(_cors_headers(cors, origin))
        headers.append((b"apigw-requestid", scope["dayfly.http_id"].encode()))
        self.platform.metrics.http_request(e.function, label, status)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        assert answer.body is not None
        try:
            async for piece in answer.body:
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
        finally:
            await answer.body.aclose()  # type: ignore[attr-defined]
        if answer.result is not None and not answer.result.ok:
            log.warning("route %s of %s failed after its first piece: the response was cut "
                        "short", label, e.function)
        await send({"type": "http.response.body", "body": b""})

    async def _run(self, scope: Scope, receive: Receive, m: Match, path: str, domain: str,
                   label: str) -> ev.Mapped | Streamed | None:
        e = m.entry
        auth_ctx = await self._authorize(scope, e)
        if isinstance(auth_ctx, ev.Mapped):
            return auth_ctx
        if e.rate is not None:
            rps, burst = self.platform.scheduler.share.rate(e.rate["rps"], e.rate["burst"])
            bucket = self.buckets.get((e.function, e.key))
            if bucket is None or (bucket.rps, bucket.burst) != (rps, burst):
                bucket = self.buckets[(e.function, e.key)] = Bucket(rps, burst)
            wait = bucket.take()
            if wait:
                return ev.error(429, "Too Many Requests",
                                [(b"retry-after", str(max(1, math.ceil(wait))).encode())])
        declared = _header(scope, b"content-length") or ""
        if declared.isdigit() and int(declared) > e.max_body:
            return _too_large(e.max_body)
        body = await _read(receive, e.max_body)
        if isinstance(body, ev.Mapped) or body is None:
            return body
        if e.url_auth == "AWS_IAM":
            iam = self._sigv4(scope, body)
            if isinstance(iam, ev.Mapped):
                return iam
            auth_ctx = iam
        request_id = scope.setdefault("dayfly.http_id", new_request_id())
        client = scope.get("client") or ("", 0)
        query = scope.get("query_string", b"").decode("latin-1")
        raw_path = path if e.kind == "url" else scope.get("path", path)
        headers = scope["headers"]
        if e.auth == "token":  # an API token can deploy: checked here, never the function's
            headers = [(k, v) for k, v in headers if k != b"authorization"]
        req = ev.Request(scope["method"], raw_path, query, headers, body, client[0],
                         f"HTTP/{scope.get('http_version', '1.1')}", request_id, domain)
        if e.kind == "url":
            uid = url_id(e.function, e.qualifier)
            event = ev.event_v2(req, "$default", {}, api_id=uid, stage="$default",
                                stage_variables={}, authorizer=auth_ctx)
        else:
            make = ev.event_v1 if e.payload_version == "1.0" else ev.event_v2
            event = make(req, e.key, m.params, api_id=e.function, stage=e.stage,
                         stage_variables=e.stage_variables, authorizer=auth_ctx)
        spec = self.registry.spec(e.function, e.qualifier)
        if spec.max_instances == 0:
            return ev.error(429, "Too Many Requests", [(b"retry-after", b"1")])
        ireq = InvokeRequest(request_id=request_id, payload=orjson.dumps(event),
                             invoked_arn=self.platform.arn(e.function, e.qualifier),
                             trigger=f"http:{label}",
                             trace_id=_header(scope, b"traceparent")
                             or _header(scope, b"x-amzn-trace-id"))
        try:
            answer = await open_stream(self.platform, spec, ireq, receive)
        except ClientGone:
            return None
        except TooManyRequests as exc:
            return ev.error(429, "Too Many Requests",
                            [(b"retry-after", str(exc.retry_after_s).encode())])
        if answer.body is not None:
            return answer  # a generator's yields or a web app's streamed response
        result = answer.result
        assert result is not None
        if not result.ok:
            return ev.error()
        return ev.map_response(result.payload, "1.0" if e.payload_version == "1.0" else "2.0")

    async def _authorize(self, scope: Scope, e: Entry) -> dict[str, Any] | ev.Mapped | None:
        """None (public), the event's authorizer context, or the 401 to answer."""
        if e.auth == "none":
            return None
        header = _header(scope, b"authorization") or ""
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        if e.auth == "token":
            if bearer and self.platform.tokens.check(bearer) is not None:
                return None
            return _unauthorized("this route needs a dayfly API token: Authorization: Bearer "
                                 "TOKEN")
        if not bearer or e.jwt is None:
            return _unauthorized("this route needs a JWT: Authorization: Bearer JWT")
        try:
            claims = await self.jwt.verify(bearer, e.jwt)
        except JwtError as exc:
            return _unauthorized(str(exc))
        return authorizer(claims)

    def _sigv4(self, scope: Scope, body: bytes) -> dict[str, Any] | ev.Mapped:
        """A function URL's AWS_IAM: SigV4 for service `lambda`, signed with a dayfly key."""
        header = _header(scope, b"authorization") or ""
        try:
            key_id = sigv4_lambda(scope, header, body, self._caller_secret)
        except PermissionError as exc:
            return ev.error(403, str(exc))
        return {"iam": {"accessKey": key_id, "accountId": ev.ACCOUNT_ID, "callerId": key_id,
                        "principalOrgId": None, "userArn": f"arn:aws:iam::{ev.ACCOUNT_ID}:user/"
                        f"{key_id}", "userId": key_id, "cognitoIdentity": None}}

    def _caller_secret(self, key_id: str) -> str | None:
        """The secret of a user's access key. A function's own S3 key (control/function_keys.py,
        in its environment, so in its code's hands) is for its buckets, not for calling URLs."""
        if self.registry.function_keys.function_of(key_id) is not None:
            return None
        return self.platform.keys.secret(key_id)


def sigv4_lambda(scope: Scope, header: str, body: bytes, secret_of: Any,
                 now: float | None = None) -> str:
    """The access key id of a request signed for service `lambda`; PermissionError if not."""
    now = time.time() if now is None else now
    alg, _, rest = header.partition(" ")
    if alg != sigv4.ALGORITHM:
        raise PermissionError("Forbidden: this function URL needs a SigV4 signature (AWS_IAM)")
    fields = dict(p.strip().partition("=")[::2] for p in rest.split(","))
    parts = fields.get("Credential", "").split("/")
    if len(parts) != 5 or parts[3] != "lambda" or parts[4] != "aws4_request":
        raise PermissionError("Forbidden: the signature must be scoped to service lambda")
    key_id, date, region = parts[0], parts[1], parts[2]
    secret = secret_of(key_id) if key_id else None
    if secret is None:
        raise PermissionError("Forbidden: the access key is not one of this node's")
    headers = scope["headers"]
    stamp = ",".join(v.decode("latin-1") for k, v in headers if k == b"x-amz-date")
    try:
        signed_at = sigv4._epoch(stamp)
    except Exception:
        raise PermissionError("Forbidden: X-Amz-Date is missing or malformed") from None
    if stamp[:8] != date or abs(now - signed_at) > sigv4.MAX_SKEW:
        raise PermissionError("Forbidden: the signature's date is not now")
    names = fields.get("SignedHeaders", "").split(";")
    if "host" not in names:
        raise PermissionError("Forbidden: the host header must be signed")
    payload = hashlib.sha256(body).hexdigest()
    declared = ",".join(v.decode("latin-1") for k, v in headers if k == b"x-amz-content-sha256")
    if declared and declared != payload:
        raise PermissionError("Forbidden: x-amz-content-sha256 does not match the body")
    query = sigv4.parse_query(scope.get("query_string", b""))
    canonical = "\n".join([
        scope["method"],
        sigv4.quote(sigv4.unquote_to_bytes(scope.get("raw_path") or scope["path"].encode()),
                    safe="/~"),
        "&".join(f"{k}={v}" for k, v in sorted((sigv4._enc(k), sigv4._enc(v)) for k, v in query)),
        "".join(f"{n}:{sigv4._header_values(headers, n)}\n" for n in names),
        ";".join(names), payload])
    to_sign = "\n".join([sigv4.ALGORITHM, stamp, "/".join(parts[1:]),
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = sigv4.signing_key(secret, date, region, "lambda")
    if not hmac.compare_digest(sigv4.sign(key, to_sign), fields.get("Signature", "")):
        raise PermissionError("Forbidden: the request signature does not match")
    return key_id


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def _header_bytes(scope: Scope) -> int:
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    for k, v in scope["headers"]:
        size += len(k) + len(v) + 4
    return size


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _unauthorized(why: str) -> ev.Mapped:
    return ev.error(401, f"Unauthorized: {why}", [(b"www-authenticate", b'Bearer realm="dayfly"')])


def _too_large(limit: int) -> ev.Mapped:
    return ev.error(413, f"Request Entity Too Large: this route takes at most {limit} bytes of "
                    "body (max_body in [http])", [(b"connection", b"close")])


async def _read(receive: Receive, limit: int) -> bytes | ev.Mapped | None:
    """The whole body (None if the caller hung up), or the 413 if it is over `limit`."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None  # a short body never runs the function
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _too_large(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _origin_ok(cors: dict[str, Any], origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`, or None if it is not allowed."""
    allowed = cors.get("allow_origins") or []
    if "*" in allowed:  # never the caller's origin reflected: with credentials, browsers refuse
        return "*"
    return origin if origin.rstrip("/").lower() in allowed else None


def _cors_headers(cors: dict[str, Any], origin: str) -> list[tuple[bytes, bytes]]:
    allow = _origin_ok(cors, origin)
    if allow is None:
        return []
    out = [(b"access-control-allow-origin", allow.encode("latin-1")), (b"vary", b"Origin")]
    if cors.get("allow_credentials"):
        out.append((b"access-control-allow-credentials", b"true"))
    if cors.get("expose_headers"):
        out.append((b"access-control-expose-headers", ",".join(cors["expose_headers"]).encode()))
    return out


def _preflight(cors: dict[str, Any], origin: str, scope: Scope) -> ev.Mapped:
    """The answer to a CORS preflight, from the configuration alone."""
    asked = (_header(scope, b"access-control-request-method") or "").upper()
    methods = cors.get("allow_methods") or []
    if _origin_ok(cors, origin) is None or (asked not in methods and "*" not in methods):
        return ev.Mapped(403, [_JSON], orjson.dumps(
            {"message": f"CORS preflight refused: origin {origin[:100]!r} or method "
                        f"{asked[:20]!r} is not allowed"}))
    out = _cors_headers(cors, origin)
    out.append((b"access-control-allow-methods", ",".join(methods).encode()))
    if cors.get("allow_headers"):
        out.append((b"access-control-allow-headers", ",".join(cors["allow_headers"]).encode()))
    if cors.get("max_age"):
        out.append((b"access-control-max-age", str(cors["max_age"]).encode()))
    return ev.Mapped(204, out, b"")
