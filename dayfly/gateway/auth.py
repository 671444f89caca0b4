"""API tokens at the front door: ASGI, in front of the invoke fast path and the app.

When a token is required: bound to a non-loopback address, or on loopback once any token
exists. Open without one: /healthz, /openapi.json, the dashboard's static files, requests
signed for S3 (SigV4 with access keys is their auth), the ingest webhook (its own token), and
invoking a function marked public. A token is accepted as `Authorization: Bearer TOKEN` or as
the access key id of a SigV4 signature (boto3, the aws CLI; see docs/decisions/0006-api-tokens.md).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from ..control.registry import split_name
from ..control.tokens import TokenStore, is_loopback
from ..errors import DayflyError
from .common import error_response
from .s3.dispatch import from_functions, is_s3

OPEN = frozenset({"/", "/ui", "/healthz", "/openapi.json", "/favicon.ico"})
OPEN_PREFIXES = ("/ui/", "/dayfly/v1/ingest/s3/")
_INVOKE_PREFIX, _INVOKE_SUFFIX = "/2015-03-31/functions/", "/invocations"
_CACHE_MAX = 4096
HINT = ("send `Authorization: Bearer TOKEN` (the CLI reads $DAYFLY_TOKEN); `dayfly token create` "
        "makes one, and a node's first token is in its data directory's `token` file")


def token_of(header: bytes) -> str | None:
    """The token in `Bearer TOKEN` or in a SigV4 `Credential=TOKEN/...`."""
    if header[:7].lower() == b"bearer ":
        return header[7:].strip().decode("latin-1")
    at = header.find(b"Credential=")
    if header.startswith(b"AWS4-HMAC-SHA256") and at > 0:
        return header[at + 11:].split(b"/", 1)[0].decode("latin-1")
    return None


class Auth:
    """Refuses (401) what needs a token and carries none that is valid; passes the rest on."""

    def __init__(self, app: ASGIApp, platform) -> None:
        self.app = app
        self.platform = platform
        self.tokens: TokenStore = platform.tokens
        self.always = not is_loopback(platform.settings.host)
        self.function_s3 = platform.settings.function_s3
        self._valid: dict[bytes, bool] = {}  # Authorization header values known to be valid
        self._seen = self.tokens.changed

    def required(self) -> bool:
        return self.always or bool(self.tokens.ids)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        for name, value in scope["headers"]:
            if name == b"authorization":
                if self._valid_header(value):
                    return True
                break
        path: str = scope["path"]
        if path in OPEN or path.startswith(OPEN_PREFIXES) or is_s3(scope):
            return True
        if from_functions(scope, self.function_s3):
            return True  # the gateway gives these the S3 endpoint or a 403, nothing else
        return (scope["method"] == "POST" and path.startswith(_INVOKE_PREFIX)
                and path.endswith(_INVOKE_SUFFIX) and self._public(scope, path))

    def _valid_header(self, value: bytes) -> bool:
        if self._seen != self.tokens.changed:  # a token was created or revoked
            self._valid.clear()
            self._seen = self.tokens.changed
        if value in self._valid:
            return True
        token = token_of(value)
        if token is None or self.tokens.check(token) is None:
            return False
        if len(self._valid) < _CACHE_MAX:
            self._valid[value] = True
        return True

    def _public(self, scope: Scope, path: str) -> bool:
        """Whether the function (version, alias) being invoked is marked public."""
        qualifier = parse_qs(scope["query_string"].decode("latin-1")).get("Qualifier", [None])[0]
        try:
            name, qualifier = split_name(path[len(_INVOKE_PREFIX):-len(_INVOKE_SUFFIX)], qualifier)
            return bool(getattr(self.platform.registry.config(name, qualifier), "public", False))
        except DayflyError:
            return False
