"""Lambda's request id on every Lambda API response: `x-amzn-RequestId`, where botocore reads
`ResponseMetadata.RequestId`. The invoke paths set their own (the invocation's id); this
wrapper gives the management calls and their errors one."""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-amzn-requestid"
LAMBDA_PREFIX = "/20"  # Lambda's API paths begin with their version date: /2015-03-31/...


def new_request_id() -> str:
    """A random (version 4) UUID as text, what `str(uuid.uuid4())` gives, in half its time: the
    invoke path makes one per request."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class RequestIds:
    """ASGI: add `x-amzn-RequestId` to a Lambda API response that carries none."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LAMBDA_PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                if not any(name.lower() == HEADER for name, _ in headers):
                    headers.append((HEADER, new_request_id().encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)
