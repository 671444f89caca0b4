"""Counts S3 requests by operation and status: an ASGI wrapper around the S3 app."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .observer import Metrics

OPERATION_KEY = "dayfly.s3_operation"  # set in the scope by the S3 app once it picked a handler


class CountS3:
    """Wraps the S3 ASGI app; the status is taken from the response start message."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.s3_request(scope.get(OPERATION_KEY, "unknown"), status)
