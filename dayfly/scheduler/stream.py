"""A streamed answer on the host: the pieces an instance sends during one invocation, held for
the HTTP response that writes them out (gateway/streaming.py).

The instance's channel calls `put` for every CHUNK frame (runtime/streaming.py sends them);
`end` is called when the invocation is over, however it ended. While more than `HIGH` bytes
wait for a slow reader, the channel stops reading, so the instance blocks on its socket instead
of the host buffering without bound; it reads again once the reader is down to `LOW`.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator

import orjson

HIGH = 1024 * 1024
LOW = 256 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")  # an HTTP header name
_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # never in a header value (no CR/LF: splitting)


def _head(meta: bytes) -> dict | None:
    """The HTTP head a CHUNK's meta carries, as the instance sent it but with only what is
    well-formed kept: an instance is not trusted to make the host write a broken response."""
    try:
        head = orjson.loads(meta).get("head")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(head, dict):
        return None
    status = head.get("statusCode")
    headers = head.get("headers")
    cookies = head.get("cookies")
    return {
        "statusCode": status if type(status) is int and 100 <= status <= 599 else 200,
        "headers": {k.lower(): v for k, v in (headers.items() if isinstance(headers, dict) else ())
                    if isinstance(k, str) and isinstance(v, str) and _TOKEN.match(k)
                    and not _BAD.search(v)},
        "cookies": [c for c in (cookies if isinstance(cookies, list) else ())
                    if isinstance(c, str) and not _BAD.search(c)],
    }


class ResponseStream:
    """Pieces of one invocation's answer, in order; `head` is the HTTP head sent with the first."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.head: dict | None = None
        self.streamed = False  # the instance sent a piece: the answer is a stream
        self.ended = False
        self.begun = loop.create_future()  # the first piece came, or the invocation ended
        self.pieces: deque[bytes] = deque()
        self.waiting = 0  # bytes in `pieces`
        self.flow = None  # the instance's channel while it runs (pause/resume)
        self._wake: asyncio.Future | None = None

    def put(self, meta: bytes, payload: bytes) -> None:
        if not self.streamed:
            self.streamed = True
            if meta:
                self.head = _head(meta)
            if not self.begun.done():
                self.begun.set_result(None)
        if payload:
            self.pieces.append(payload)
            self.waiting += len(payload)
            if self.waiting > HIGH and self.flow is not None:
                self.flow.pause()
        self._signal()

    def end(self) -> None:
        self.ended = True
        if not self.begun.done():
            self.begun.set_result(None)
        self._signal()

    def _signal(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The pieces as they come, until the invocation ends."""
        while True:
            if self.pieces:
                data = self.pieces.popleft()
                self.waiting -= len(data)
                if self.waiting < LOW and self.flow is not None and self.flow.paused:
                    self.flow.resume()
                yield data
            elif self.ended:
                return
            else:
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake
