"""Sends requests signed for S3 to the S3 app, everything else on to the Lambda/dayfly API.

Which is which is `classify.py`'s decision (the S3 family: a SigV4 credential scoped to `s3`,
in the Authorization header or a presigned URL's X-Amz-Credential), the same one auth and the
invoke fast path act on.

Functions reach this node only through their egress relay, which connects to the functions'
S3 listener (`Settings.function_s3`, on loopback): requests that arrive there get the S3
endpoint or a 403, never the other APIs. It is told by the listening socket a request came in
on (the ASGI `server`), which no header and no source address can change.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..classify import Family, route
from ..common import error_response


class S3Dispatch:
    """ASGI middleware: S3-scoped HTTP requests go to `s3`, all else to the wrapped app (or,
    on the functions' S3 listener, a 403)."""

    def __init__(self, app: ASGIApp, s3: ASGIApp,
                 function_s3: tuple[str, int] | None = None) -> None:
        self.app = app
        self.s3 = s3
        self.function_s3 = function_s3

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        family = route(scope, self.function_s3).family if scope["type"] != "lifespan" else None
        if scope["type"] == "http" and family is Family.S3:
            await self.s3(scope, receive, send)
        elif family is Family.REFUSED or (family is Family.S3 and scope["type"] != "http"):
            if scope["type"] != "http":
                await send({"type": "websocket.close", "code": 1008})
                return
            response = error_response("AccessDeniedException", "functions reach only the S3 "
                                      "endpoint of this node (requests signed for s3)", 403)
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)
