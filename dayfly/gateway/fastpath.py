"""The invoke endpoint as bare ASGI, in front of everything: the hottest request skips
routing and middleware. What is an invoke is `classify.py`'s decision (the INVOKE family: not
signed for S3, not on the functions' S3 listener), the one auth acted on; every other request
goes on to the full application unchanged."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ..cluster.credential import FORWARDED
from ..errors import ClientGone, DayflyError, RequestTooLarge, TooManyRequests
from .classify import Family, route
from .common import error_response, internal_error
from .connections import backoff
from .invoke import run_invoke
from .streaming import run_stream

log = logging.getLogger("dayfly.gateway")

_WANTED = {b"x-amz-invocation-type", b"x-amz-log-type", b"x-amz-client-context", b"traceparent",
           b"x-amzn-trace-id", b"content-length", b"authorization", FORWARDED.encode()}


class FastInvoke:
    """ASGI wrapper: POST /2015-03-31/functions/NAME/invocations is served here directly."""

    def __init__(self, app: ASGIApp, platform) -> None:
        self.app = app
        self.platform = platform
        self.function_s3 = platform.settings.function_s3  # S3 only there, never an invoke

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        r = route(scope, self.function_s3)
        if r.family is not Family.INVOKE:
            await self.app(scope, receive, send)
            return
        name, qualifier = r.name, r.qualifier
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in _WANTED}

        async def read(limit: int) -> bytes:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the "
                                      "Invoke operation")
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":  # gone (or timed out) mid-body: a
                    raise ClientDisconnect()  # short body must never run the function
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the "
                                          "Invoke operation")
                chunks.append(chunk)
                more = message.get("more_body", False)
            return b"".join(chunks)

        try:
            # receive() again, once the body is read, returns only if the caller hangs up
            response = await (run_stream if r.stream else run_invoke)(
                self.platform, name, qualifier, headers, read, receive)
        except (ClientDisconnect, ClientGone):
            return
        except DayflyError as exc:
            if exc.status >= 500:
                log.error("invoke %s failed: %s", name, exc.message)
            # a 429: the connection's next request is read only after its Retry-After
            wait = backoff(scope, exc.retry_after_s) if isinstance(exc, TooManyRequests) else 1
            response = error_response(exc.code, exc.message, exc.status, exc.hint, wait)
        except Exception as exc:
            log.exception("invoke %s failed", name)
            response = internal_error(exc)
        await response(scope, receive, send)
