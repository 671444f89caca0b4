"""Lambda's request id on every Lambda API response: `x-amzn-RequestId`, where botocore reads
`ResponseMetadata.RequestId`. The invoke paths set their own (the invocation's id); this
wrapper gives the management calls and their errors one."""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-amzn-requestid"
LAMBDA_PREFIX = "/20"  # Lambda's API paths begin with their version date: /2015-03-31/...


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
                    headers.append((HEADER, str(uuid.uuid4()).encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)
