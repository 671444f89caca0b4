"""The invoke endpoint: the hot path. Memory only: registry lookup, scheduler, reply."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..cluster.credential import inbound
from ..cluster.forward import LOCAL_ONLY
from ..config import MAX_PAYLOAD
from ..control.registry import split_name
from ..errors import InvalidParameter, InvalidRequestContent, TooManyRequests
from ..stores.records import lambda_log_text
from ..types import InvokeRequest
from .common import read_body
from .request_ids import new_request_id

_TYPES = ("RequestResponse", "Event", "DryRun")


def _client_context(header: str | None) -> str | None:
    if not header:
        return None
    try:
        text = base64.b64decode(header, validate=True).decode()
        orjson.loads(text)
    except (binascii.Error, UnicodeDecodeError, orjson.JSONDecodeError):
        raise InvalidRequestContent("X-Amz-Client-Context must be base64-encoded JSON") from None
    return text


async def invoke(request: Request) -> Response:
    """POST /2015-03-31/functions/{name}/invocations (Lambda Invoke), through Starlette."""
    return await run_invoke(request.app.state.platform, request.path_params["name"],
                            request.query_params.get("Qualifier"), request.headers,
                            lambda limit: read_body(request, limit, "Invoke"))


async def run_invoke(platform, raw_name: str, qualifier: str | None,
                     headers: Mapping[str, str],
                     read: Callable[[int], Awaitable[bytes]],
                     gone: Callable[[], Awaitable[object]] | None = None) -> Response:
    """Lambda Invoke: RequestResponse, Event (queued durably, 202) or DryRun (204)."""
    itype = headers.get("x-amz-invocation-type") or "RequestResponse"
    if itype not in _TYPES:
        raise InvalidParameter(f"Invocation type {itype!r} is not one of {', '.join(_TYPES)}")
    name, qualifier = split_name(raw_name, qualifier)
    spec = platform.registry.spec(name, qualifier)
    body = await read(MAX_PAYLOAD if itype != "Event" else 256 * 1024)
    if body.strip():
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from None
    else:
        body = b"{}"
    forwarded = inbound(headers, body, itype)
    if itype == "DryRun":
        return Response(status_code=204, headers={"X-Amz-Executed-Version": spec.version,
                                                  "X-Amzn-RequestId": new_request_id()})
    if itype == "Event":
        ev_id = await platform.queue.put(name, qualifier, body, "event")
        return Response(status_code=202, headers={"X-Amzn-RequestId": ev_id})
    if spec.max_instances == 0:  # reserved concurrency 0: no instance can ever serve, so no queue
        raise TooManyRequests("Rate Exceeded: the function's reserved concurrency is 0")
    # no idle instance and no room for one here: a peer with room runs it (cluster only; memory
    # only until then, and never for a request another node forwarded here)
    forwarder = getattr(platform, "forwarder", LOCAL_ONLY)
    if forwarder is not LOCAL_ONLY and not forwarded and not platform.scheduler.has_room(spec):
        peer = forwarder.choose(spec)
        if peer is not None:
            reply = await forwarder.forward(peer, raw_name, qualifier, headers, body, spec, gone)
            if reply is not None:
                return reply
    req = InvokeRequest(request_id=new_request_id(), payload=body,
                        invoked_arn=platform.arn(name, qualifier),
                        client_context=_client_context(headers.get("x-amz-client-context")),
                        trace_id=headers.get("traceparent") or headers.get("x-amzn-trace-id"))
    result = await platform.scheduler.invoke(spec, req, gone)
    raw = [(b"content-length", b"%d" % len(result.payload)),
           (b"content-type", b"application/json"),
           (b"x-amz-executed-version", spec.version.encode()),
           (b"x-amzn-requestid", req.request_id.encode())]
    if not result.ok:
        raw.append((b"x-amz-function-error", (result.error_type or "Unhandled").encode()))
    if headers.get("x-amz-log-type") == "Tail":
        tail = lambda_log_text(spec, req, result).encode()[-4096:]
        raw.append((b"x-amz-log-result", base64.b64encode(tail)))
    return _Reply(result.payload, raw)


class _Reply(Response):
    """A 200 whose header list is built as the ASGI server takes it (the warm path's reply:
    Response's own header building costs more than the rest of this function)."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code, self.body, self.background = 200, body, None
        self.raw_headers = raw_headers
