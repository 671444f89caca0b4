"""API tokens at the front door: ASGI, in front of the invoke fast path and the app.

When a token is required: bound to a non-loopback address, or on loopback once any token
exists. What needs one follows the route family `classify.py` gave the request, the same
decision the fast path and the S3 dispatch act on: open without one are the OPEN family
(/healthz, /openapi.json, the dashboard's files), S3 (the S3 endpoint verifies SigV4 with its
access keys), INGEST (its own source token), REFUSED (the functions' listener answers 403
itself) and invoking a function marked public. A token is accepted as `Authorization: Bearer
TOKEN` or as the access key id of a SigV4 Authorization header (boto3, the aws CLI; see
docs/decisions/0006-api-tokens.md); never in a URL, where logs and Referer headers keep it.
A node credential (`Authorization: DAYFLY-NODE ...`, another cluster node forwarding an invoke)
takes a token's place on the invoke route only; anywhere else, or forged, or replayed, or out
of its time window, it is answered 403, token policy or not.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..cluster.forward import LOCAL_ONLY
from ..control.registry import split_name
from ..control.tokens import TokenStore, is_loopback
from ..errors import DayflyError
from .classify import Family, Form, Route, route
from .common import error_response

NEEDS_NO_TOKEN = frozenset({Family.OPEN, Family.S3, Family.INGEST, Family.REFUSED})
_CACHE_MAX = 4096
HINT = ("send `Authorization: Bearer TOKEN` (the CLI reads $DAYFLY_TOKEN); `dayfly token create` "
        "makes one, and a node's first token is in its data directory's `token` file")


class Auth:
    """Refuses (401) what needs a token and carries none that is valid; passes the rest on."""

    def __init__(self, app: ASGIApp, platform) -> None:
        self.app = app
        self.platform = platform
        self.tokens: TokenStore = platform.tokens
        self.always = not is_loopback(platform.settings.host)
        self.function_s3 = platform.settings.function_s3
        self._valid: dict[str, bool] = {}  # tokens known to be valid
        self._seen = self.tokens.changed

    def required(self) -> bool:
        return self.always or bool(self.tokens.ids)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route(scope, self.function_s3).form is Form.NODE:
            if not self._node(scope):
                await error_response("AccessDeniedException", "the node credential is not valid "
                                     "for this request", 403)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] == "lifespan" or not (self.always or self.tokens.ids) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = error_response("UnauthorizedException", "this dayfly requires an API token "
                                  "for this request", 401, HINT)
        response.headers["www-authenticate"] = 'Bearer realm="dayfly"'
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        r = route(scope, self.function_s3)
        if r.family in NEEDS_NO_TOKEN or self._valid_token(r):
            return True
        return r.family is Family.INVOKE and self._public(r)

    def _node(self, scope: Scope) -> bool:
        """A node credential (another cluster node forwarding an invoke): valid on the invoke
        route only, whatever the token policy, and only with a MAC this cluster's key made for
        this very request, in its time window, once (cluster/forward.py)."""
        r = route(scope, self.function_s3)
        if r.family is not Family.INVOKE or not r.key:
            return False
        raw = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = (raw + b"?" + query if query else raw).decode("latin-1")
        forwarder = getattr(self.platform, "forwarder", LOCAL_ONLY)
        return forwarder.verify(r.key, scope["method"], target) is not None

    def _valid_token(self, r: Route) -> bool:
        if r.form not in (Form.BEARER, Form.SIGV4_HEADER) or not r.key:
            return False
        if self._seen != self.tokens.changed:  # a token was created or revoked
            self._valid.clear()
            self._seen = self.tokens.changed
        if r.key in self._valid:
            return True
        if self.tokens.check(r.key) is None:
            return False
        if len(self._valid) < _CACHE_MAX:
            self._valid[r.key] = True
        return True

    def _public(self, r: Route) -> bool:
        """Whether the function (version, alias) being invoked is marked public."""
        try:
            name, qualifier = split_name(r.name, r.qualifier)
            return bool(getattr(self.platform.registry.config(name, qualifier), "public", False))
        except DayflyError:
            return False
