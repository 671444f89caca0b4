"""Sends requests signed for S3 to the S3 app, everything else on to the Lambda/dayfly API.

The test is on the SigV4 scope (`.../s3/aws4_request`) of the Authorization header or of a
presigned URL's X-Amz-Credential: two substring checks, no parsing, so the invoke path pays
next to nothing.

Functions reach this node only through their egress relay, which connects from
FUNCTION_S3_SOURCE: requests from there get the S3 endpoint or a 403, never the other APIs.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ...config import FUNCTION_S3_SOURCE
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


class S3Dispatch:
    """ASGI middleware: S3-scoped HTTP requests go to `s3`, all else to the wrapped app."""

    def __init__(self, app: ASGIApp, s3: ASGIApp) -> None:
        self.app = app
        self.s3 = s3

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_s3(scope):
            await self.s3(scope, receive, send)
        elif (scope.get("client") or ("",))[0] == FUNCTION_S3_SOURCE:
            if scope["type"] != "http":
                await send({"type": "websocket.close", "code": 1008})
                return
            response = error_response("AccessDeniedException", "functions reach only the S3 "
                                      "endpoint of this node (requests signed for s3)", 403)
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)
