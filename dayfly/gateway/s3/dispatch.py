"""Sends requests signed for S3 to the S3 app, everything else on to the Lambda/dayfly API.

The test is on the SigV4 scope (`.../s3/aws4_request`) of the Authorization header or of a
presigned URL's X-Amz-Credential: two substring checks, no parsing, so the invoke path pays
next to nothing.

Functions reach this node only through their egress relay, which connects to the functions'
S3 listener (`Settings.function_s3`, on loopback): requests that arrive there get the S3
endpoint or a 403, never the other APIs. It is told by the listening socket a request came in
on (the ASGI `server`), which no header and no source address can change.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..common import error_response

_SCOPE = b"/s3/aws4_request"


def is_s3(scope: Scope) -> bool:
    """Whether an HTTP request is signed for the S3 service."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return _SCOPE in value
    query = scope["query_string"]
    if b"X-Amz-Credential=" not in query:
        return False
    return _SCOPE in query.replace(b"%2F", b"/").replace(b"%2f", b"/")


def from_functions(scope: Scope, function_s3: tuple[str, int] | None) -> bool:
    """Whether a request came in on the functions' S3 listener (S3 only there)."""
    return function_s3 is not None and tuple(scope.get("server") or ()) == function_s3


class S3Dispatch:
    """ASGI middleware: S3-scoped HTTP requests go to `s3`, all else to the wrapped app (or,
    on the functions' S3 listener, a 403)."""

    def __init__(self, app: ASGIApp, s3: ASGIApp,
                 function_s3: tuple[str, int] | None = None) -> None:
        self.app = app
        self.s3 = s3
        self.function_s3 = function_s3

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_s3(scope):
            await self.s3(scope, receive, send)
        elif from_functions(scope, self.function_s3):
            if scope["type"] != "http":
                await send({"type": "websocket.close", "code": 1008})
                return
            response = error_response("AccessDeniedException", "functions reach only the S3 "
                                      "endpoint of this node (requests signed for s3)", 403)
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)
