"""An answer made in pieces: a generator handler's yields, or a web app's response.

When the caller streams (INVOKE meta `st`), every piece goes to the host as a CHUNK frame the
moment it is made, the head (statusCode, headers, cookies) with the first; otherwise the pieces
are kept and the invocation's RESULT is the whole answer: API Gateway's response shape when
there is a head, the bytes themselves when there is none.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from . import protocol

STREAM_LIMIT = 20 * 1024 * 1024  # bytes one streamed answer may carry (Lambda's limit)
_TEXT = ("text/", "application/json", "application/xml", "application/javascript",
         "application/x-www-form-urlencoded", "+json", "+xml")

Send = Callable[[int, dict | None, bytes], None]


class TooLarge(Exception):
    """The answer grew past its limit."""


class Answer:
    """One invocation's answer in pieces. `send` None: kept whole for the RESULT."""

    __slots__ = ("head", "limit", "parts", "send", "size", "started")

    def __init__(self, send: Send | None, limit: int) -> None:
        self.send = send
        self.limit = limit
        self.head: dict | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.started = False  # a CHUNK went out: the host streams this answer

    def set_head(self, status: int, headers: dict[str, str], cookies: list[str],
                 flush: bool = False) -> None:
        """The HTTP head; streamed at once with `flush`, else with the first piece."""
        if self.started:
            raise RuntimeError("the response head was already sent")
        self.head = {"statusCode": status, "headers": headers}
        if cookies:
            self.head["cookies"] = cookies
        if flush and self.send is not None:
            self._out(b"")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"Response payload size exceeded maximum allowed payload size "
                           f"({self.limit} bytes).")
        if self.send is None:
            self.parts.append(data)
        elif data:
            self._out(data)

    def _out(self, data: bytes) -> None:
        meta = None
        if not self.started:
            self.started = True
            if self.head is not None:
                meta = {"head": self.head}
        self.send(protocol.CHUNK, meta, data)  # type: ignore[misc]  # only when streaming

    def finish(self) -> bytes:
        """The RESULT payload: empty when streamed (a head not sent yet goes now), else the
        whole answer."""
        if self.send is not None:
            if not self.started:
                self._out(b"")
            return b""
        body = b"".join(self.parts)
        if self.head is None:
            return body
        out = dict(self.head)
        ctype = self.head["headers"].get("content-type", "")
        text = (not self.head["headers"].get("content-encoding")
                and (not ctype or any(t in ctype for t in _TEXT)))
        if text:
            try:
                out["body"], out["isBase64Encoded"] = body.decode(), False
                return json.dumps(out).encode()
            except UnicodeDecodeError:
                pass
        out["body"], out["isBase64Encoded"] = base64.b64encode(body).decode(), True
        return json.dumps(out).encode()


def yielded(answer: Answer, item: object) -> None:
    """One item a streaming handler yielded: bytes or str; a dict first is the HTTP head."""
    if isinstance(item, bytes | bytearray | memoryview):
        answer.write(bytes(item))
    elif isinstance(item, str):
        answer.write(item.encode())
    elif isinstance(item, dict) and answer.head is None and not answer.size:
        headers = item.get("headers") or {}
        cookies = item.get("cookies") or []
        status = item.get("statusCode", 200)
        if (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
                or not isinstance(headers, dict) or not isinstance(cookies, list)):
            raise TypeError("a streamed head is {statusCode: 100-599, headers: {..}, "
                            "cookies: [..]}")
        answer.set_head(status, {str(k).lower(): str(v) for k, v in headers.items()},
                        [str(c) for c in cookies], flush=True)
    else:
        raise TypeError(f"a streaming handler yields bytes or str (a dict first: the HTTP "
                        f"head), not {type(item).__name__}")


def drain(gen, answer: Answer) -> None:
    for item in gen:
        yielded(answer, item)


async def drain_async(agen, answer: Answer) -> None:
    async for item in agen:
        yielded(answer, item)
