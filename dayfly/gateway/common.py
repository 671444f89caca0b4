"""Helpers shared by the HTTP endpoints: bodies with limits, JSON responses, Lambda error shapes."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import DayflyError, InvalidRequestContent, RequestTooLarge, TooManyRequests
from .connections import backoff
from .request_ids import new_request_id

log = logging.getLogger("dayfly.gateway")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def read_body(request: Request, limit: int, what: str = "request") -> bytes:
    """The whole body, refusing (413) anything over `limit` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the {what} "
                              "operation")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the {what} "
                                  "operation")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, limit: int = 70 * 1024 * 1024) -> dict[str, Any]:
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestContent("Request body must be a JSON object")
    return data


def error_response(code: str, message: str, status: int, hint: str | None = None,
                   retry_after: int = 1) -> JSON:
    """Lambda's REST-JSON error: the type in a header and in the body, so every SDK finds it."""
    body: dict[str, Any] = {"Type": "User" if status < 500 else "Service", "message": message,
                            "__type": code}
    if hint:
        body["hint"] = hint
    headers = {"X-Amzn-ErrorType": code, "X-Amzn-RequestId": new_request_id()}
    if status == 429:
        headers["Retry-After"] = str(retry_after)
    return JSON(body, status_code=status, headers=headers)


async def on_dayfly_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DayflyError)
    if exc.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    # a 429: the connection's next request is read only after its Retry-After
    wait = backoff(request.scope, exc.retry_after_s) if isinstance(exc, TooManyRequests) else 1
    return error_response(exc.code, exc.message, exc.status, exc.hint, wait)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "ResourceNotFoundException", 405: "MethodNotAllowedException"}.get(
        exc.status_code, "InvalidRequestException")
    msg = (f"No such endpoint: {request.method} {request.url.path}" if exc.status_code == 404
           else f"{request.method} is not allowed on {request.url.path}"
           if exc.status_code == 405 else str(exc.detail))
    return error_response(code, msg, exc.status_code)


async def on_client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up, or was timed out, while its body was read: no one to answer, and
    nothing for the log (slow clients must not fill it with tracebacks)."""
    return Response(status_code=400)


def internal_error(exc: Exception) -> JSON:
    """The 500 for an unexpected exception: its type only, since its text may name paths on
    this machine (the caller logs it)."""
    return error_response("ServiceException", f"internal error ({type(exc).__name__}); the "
                          "node's log has the details", 500)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return internal_error(exc)
