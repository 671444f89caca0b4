"""Streamed answers over HTTP.

`open_stream` runs one invocation whose answer may come in pieces (a generator handler, a web
app's response): it returns as soon as the first piece or the whole answer is there. Routes and
function URLs write a `Streamed` out as chunked transfer or server-sent events; Lambda's
InvokeWithResponseStream (`run_stream`) writes it in the `application/vnd.amazon.eventstream`
framing boto3 reads: PayloadChunk events, then one InvokeComplete.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
from starlette.responses import Response, StreamingResponse

from ..config import MAX_PAYLOAD
from ..control.registry import split_name
from ..errors import InvalidParameter, InvalidRequestContent, TooManyRequests
from ..scheduler.stream import ResponseStream
from ..stores.records import lambda_log_text
from ..types import FunctionSpec, InvokeRequest, InvokeResult
from .invoke import _client_context
from .request_ids import new_request_id

STREAM_PREFIX, STREAM_SUFFIX = "/2021-11-15/functions/", "/response-streaming-invocations"
EVENTSTREAM = "application/vnd.amazon.eventstream"
PRELUDE_END = b"\0" * 8  # after a streamed HTTP head's JSON, as Lambda's HttpResponseStream
_TYPES = ("RequestResponse", "DryRun")


@dataclass(slots=True)
class Streamed:
    """One invocation's answer as it comes.

    Not streamed (the handler returned a value, or failed before its first piece): `body` is
    None and `result` is the whole answer, to be mapped as any invoke's. Streamed: `head` is the
    HTTP head the function sent with its first piece ({statusCode, headers, cookies}; None from
    a generator that yielded no dict first), `body` yields the pieces as they come; once it is
    exhausted `result` says how the invocation ended (an error after the first piece: the
    response can only be cut short). Stop iterating (`aclose`) and the invocation is stopped.
    """

    result: InvokeResult | None = None
    head: dict | None = None
    body: AsyncIterator[bytes] | None = None


async def open_stream(platform, spec: FunctionSpec, req: InvokeRequest,
                      gone: Callable[[], Awaitable[object]] | None = None) -> Streamed:
    """Start the invocation; return once its first piece (or its whole answer) is there.
    Throttles and a client gone while queued raise as from `Scheduler.invoke`."""
    stream = req.stream = ResponseStream()
    task = asyncio.ensure_future(platform.scheduler.invoke(spec, req, gone))
    task.add_done_callback(lambda _: stream.end())
    try:
        await stream.begun
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not stream.streamed:
        return Streamed(result=await task)
    out = Streamed(head=stream.head)
    out.body = _pieces(stream, task, out)
    return out


async def _pieces(stream: ResponseStream, task: asyncio.Future,
                  out: Streamed) -> AsyncIterator[bytes]:
    try:
        async for data in stream.chunks():
            yield data
        out.result = await task
    finally:
        if not task.done():  # the reader went away: stop the invocation (its instance is killed)
            task.cancel()


def http_response(streamed: Streamed) -> StreamingResponse:
    """A streamed answer as a plain HTTP response (routes, function URLs): the head's status,
    headers and cookies (application/octet-stream without a head), then the pieces with chunked
    transfer as they come; text/event-stream (SSE) goes the same way. An error after the first
    piece cannot change the status any more: the body just ends (`streamed.result` says why)."""
    assert streamed.body is not None
    head = streamed.head or {}
    headers = dict(head.get("headers") or {"content-type": "application/octet-stream"})
    resp = StreamingResponse(streamed.body, status_code=int(head.get("statusCode", 200)),
                             headers=headers)
    for cookie in head.get("cookies") or ():
        resp.raw_headers.append((b"set-cookie", str(cookie).encode("latin-1", "replace")))
    return resp


# -- the eventstream framing ------------------------------------------------------------------

def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v  # 7: a string


_CHUNK_HEADERS = (_header(":event-type", "PayloadChunk")
                  + _header(":content-type", "application/octet-stream")
                  + _header(":message-type", "event"))
_COMPLETE_HEADERS = (_header(":event-type", "InvokeComplete")
                     + _header(":content-type", "application/json")
                     + _header(":message-type", "event"))


def event_message(headers: bytes, payload: bytes) -> bytes:
    """One message: total and headers length, prelude CRC, headers, payload, message CRC."""
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    msg = prelude + headers + payload
    return msg + struct.pack(">I", zlib.crc32(msg))


def payload_chunk(data: bytes) -> bytes:
    return event_message(_CHUNK_HEADERS, data)


def invoke_complete(result: InvokeResult | None, log_tail: str | None = None) -> bytes:
    body: dict = {}
    if result is None:
        body = {"ErrorCode": "Runtime.ExitError", "ErrorDetails": "the invocation did not end"}
    elif not result.ok:
        try:
            err = orjson.loads(result.payload)
        except orjson.JSONDecodeError:
            err = {}
        body = {"ErrorCode": str(err.get("errorType") or result.error_type),
                "ErrorDetails": str(err.get("errorMessage") or "")}
    if log_tail is not None:
        body["LogResult"] = log_tail
    return event_message(_COMPLETE_HEADERS, orjson.dumps(body))


# -- InvokeWithResponseStream -------------------------------------------------------------------

async def run_stream(platform, raw_name: str, qualifier: str | None, headers: Mapping[str, str],
                     read: Callable[[int], Awaitable[bytes]],
                     gone: Callable[[], Awaitable[object]] | None = None) -> Response:
    """POST /2021-11-15/functions/NAME/response-streaming-invocations."""
    itype = headers.get("x-amz-invocation-type") or "RequestResponse"
    if itype not in _TYPES:
        raise InvalidParameter(f"Invocation type {itype!r} is not one of {', '.join(_TYPES)}")
    name, qualifier = split_name(raw_name, qualifier)
    spec = platform.registry.spec(name, qualifier)
    body = await read(MAX_PAYLOAD)
    if body.strip():
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from None
    else:
        body = b"{}"
    rid = new_request_id()
    out = {"X-Amz-Executed-Version": spec.version, "X-Amzn-RequestId": rid}
    if itype == "DryRun":
        return Response(status_code=204, headers=out)
    if spec.max_instances == 0:
        raise TooManyRequests("Rate Exceeded: the function's reserved concurrency is 0")
    req = InvokeRequest(request_id=rid, payload=body, invoked_arn=platform.arn(name, qualifier),
                        client_context=_client_context(headers.get("x-amz-client-context")),
                        trace_id=headers.get("traceparent") or headers.get("x-amzn-trace-id"))
    tail = headers.get("x-amz-log-type") == "Tail"
    streamed = await open_stream(platform, spec, req, gone)
    if streamed.body is None:
        result = streamed.result
        assert result is not None
        data = payload_chunk(result.payload) if result.ok and result.payload else b""
        return Response(data + invoke_complete(result, _tail(spec, req, result, tail)), 200,
                        out, media_type=EVENTSTREAM)
    return StreamingResponse(_events(streamed, spec, req, tail), 200, out,
                             media_type=EVENTSTREAM)


async def _events(streamed: Streamed, spec: FunctionSpec, req: InvokeRequest,
                  tail: bool) -> AsyncIterator[bytes]:
    assert streamed.body is not None
    try:
        if streamed.head is not None:
            yield payload_chunk(orjson.dumps(streamed.head) + PRELUDE_END)
        async for data in streamed.body:
            yield payload_chunk(data)
    finally:
        await streamed.body.aclose()  # type: ignore[attr-defined]  # an async generator
    result = streamed.result
    yield invoke_complete(result, _tail(spec, req, result, tail) if result else None)


def _tail(spec: FunctionSpec, req: InvokeRequest, result: InvokeResult, tail: bool) -> str | None:
    if not tail:
        return None
    return base64.b64encode(lambda_log_text(spec, req, result).encode()[-4096:]).decode()
