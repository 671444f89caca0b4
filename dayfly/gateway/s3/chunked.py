"""aws-chunked request bodies: signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]) and
unsigned ones with trailing checksums (STREAMING-UNSIGNED-PAYLOAD-TRAILER).

    signed:    <hex size>;chunk-signature=<sig>\\r\\n<data>\\r\\n ... 0;chunk-signature=<sig>\\r\\n
    unsigned:  <hex size>\\r\\n<data>\\r\\n ... 0\\r\\n
    then, with a trailer: <name>:<value>\\r\\n ... [x-amz-trailer-signature:<sig>\\r\\n] \\r\\n

Each chunk signature signs the previous signature (the first one: the request's) and the
SHA-256 of the chunk, so chunks cannot be dropped, reordered or altered. Data is passed on as it
arrives; a bad signature raises before the object is committed, so nothing bad is ever stored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
from collections import deque
from collections.abc import AsyncIterator

from ...stores.blobs import Lane
from ...stores.s3errors import S3Error
from .sigv4 import EMPTY_SHA256, Auth, sign

MAX_LINE = 4096
INLINE = 1024 * 1024  # signed bytes checked on the event loop before checks go to a thread
AHEAD = 8 * 1024 * 1024  # bytes of chunks whose check has not finished before receiving waits
MAX_CHECKS = 256  # ... and chunks (a body of tiny chunks must not queue millions of checks)
PIECE = 1024 * 1024  # bytes of a chunk passed on at most at once (a view, not a copy)


def _incomplete(why: str) -> S3Error:
    return S3Error("IncompleteBody", f"The aws-chunked body is malformed: {why}")


class _Reader:
    """Lines and counted reads over an ASGI body stream. Counted reads are views of the
    received buffers (no copy); only a line split between two receives is joined."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self.stream = stream
        self.data = b""  # the buffer being read, from `pos`
        self.pos = 0
        self.eof = False

    async def _fill(self) -> bool:
        """Read more; False at the end of the body (empty chunks are skipped)."""
        while not self.eof:
            try:
                data = await self.stream.__anext__()
            except StopAsyncIteration:
                self.eof = True
                break
            if data:
                self.data, self.pos = data, 0
                return True
        return False

    async def line(self) -> bytes:
        head = b""  # a line's start, when it spans receives
        while True:
            i = self.data.find(b"\r\n", self.pos)
            if i >= 0 and not (head.endswith(b"\r") and i > self.pos):
                out = head + self.data[self.pos:i]
                self.pos = i + 2
                return out
            if head.endswith(b"\r") and self.data[self.pos:self.pos + 1] == b"\n":
                self.pos += 1  # the CRLF was split between two receives
                return head[:-1]
            head += self.data[self.pos:]
            self.pos = len(self.data)
            if len(head) > MAX_LINE:
                raise _incomplete("a chunk header or trailer line is too long")
            if not await self._fill():
                raise _incomplete("the body ended in the middle of a line")

    async def some(self, limit: int) -> memoryview:
        if self.pos >= len(self.data) and not await self._fill():
            raise _incomplete("the body ended in the middle of a chunk")
        out = memoryview(self.data)[self.pos:self.pos + limit]
        self.pos += len(out)
        return out

    async def at_end(self) -> bool:
        return self.pos >= len(self.data) and not await self._fill()


class ChunkedBody:
    """Decodes an aws-chunked stream; `trailers` holds the trailing headers once it is read."""

    def __init__(self, stream: AsyncIterator[bytes], auth: Auth | None, trailer: bool) -> None:
        self.reader = _Reader(stream)
        self.auth = auth  # None: unsigned chunks
        self.trailer = trailer
        self.trailers: dict[str, str] = {}
        self.prev = auth.signature if auth else ""  # the signature the next one signs
        # past INLINE bytes, chunk signatures are checked in a thread of their own while the
        # next chunks are received (SHA-256 of every byte: a quarter of a second per 256 MiB
        # on the event loop); the body ends only once every check has passed
        self.lane: Lane | None = None
        self.inline = False  # no lane was spare: every check on the event loop
        self.checks: deque[tuple[concurrent.futures.Future[None], int]] = deque()
        self.unchecked = 0  # bytes of the chunks in `checks`

    def _check(self, kind: str, prev: str, tail: str, given: str) -> None:
        assert self.auth is not None
        to_sign = "\n".join([kind, self.auth.timestamp, self.auth.scope, prev, tail])
        if not hmac.compare_digest(sign(self.auth.signing_key, to_sign), given):
            raise S3Error("SignatureDoesNotMatch", "The request signature we calculated does "
                          "not match the signature you provided (aws-chunked "
                          f"{'trailer' if kind.endswith('TRAILER') else 'chunk'}).",
                          StringToSign=to_sign, SignatureProvided=given[:64])

    def _check_chunk(self, prev: str, views: list[memoryview], given: str) -> None:
        h = hashlib.sha256()
        for v in views:
            h.update(v)
        self._check("AWS4-HMAC-SHA256-PAYLOAD", prev, f"{EMPTY_SHA256}\n{h.hexdigest()}", given)

    async def _chunk_signed(self, views: list[memoryview], given: str, seen: int) -> None:
        prev, self.prev = self.prev, given
        if self.lane is None and (seen <= INLINE or self.inline or not Lane.reserve(1)):
            self.inline = seen > INLINE  # (no lane spare: this body is checked here)
            self._check_chunk(prev, views, given)
            return
        if self.lane is None:
            try:
                self.lane = Lane("dayfly-s3-chunks")
            except RuntimeError:  # no thread could be started: checked here from now on
                self.inline = True
                self._check_chunk(prev, views, given)
                return
        size = sum(len(v) for v in views)
        self.checks.append((self.lane.submit(self._check_chunk, prev, views, given), size))
        self.unchecked += size
        while self.checks and (self.checks[0][0].done() or self.unchecked > AHEAD
                               or len(self.checks) > MAX_CHECKS):
            await self._oldest()

    async def _oldest(self) -> None:
        check, size = self.checks.popleft()
        self.unchecked -= size
        await asyncio.wrap_future(check)

    async def _checked(self) -> None:
        while self.checks:
            await self._oldest()

    def _header(self, line: bytes) -> tuple[int, str]:
        size, _, ext = line.partition(b";")
        try:
            n = int(size, 16)
        except ValueError:
            raise _incomplete("a chunk size is not hexadecimal") from None
        if n < 0 or len(size) > 16:
            raise _incomplete("a chunk size is out of range")
        sig = ""
        if self.auth is not None:
            name, _, value = ext.partition(b"=")
            if name.strip() != b"chunk-signature" or not value:
                raise S3Error("SignatureDoesNotMatch", "A chunk has no chunk-signature")
            sig = value.strip().decode("latin-1")
        return n, sig

    async def __aiter__(self) -> AsyncIterator[memoryview]:
        try:
            async for data in self._decode():
                yield data
        finally:
            if self.lane is not None:
                self.lane.stop(S3Error("IncompleteBody", "the body ended early"))

    async def _decode(self) -> AsyncIterator[memoryview]:
        r = self.reader
        seen = 0
        while True:
            n, sig = self._header(await r.line())
            views: list[memoryview] = []
            left = n
            while left:
                data = await r.some(min(left, PIECE))
                left -= len(data)
                if self.auth is not None:
                    views.append(data)
                yield data
            seen += n
            if self.auth is not None:
                await self._chunk_signed(views, sig, seen)
            if n == 0:
                break
            if await r.line() != b"":
                raise _incomplete("a chunk is longer than its declared size")
        await self._checked()
        if self.trailer:
            await self._read_trailer()
        elif await r.line() != b"":
            raise _incomplete("unexpected data after the last chunk")
        if not await r.at_end():
            raise _incomplete("unexpected data after the end of the body")

    async def _read_trailer(self) -> None:
        signature = None
        canonical = b""
        while line := await self.reader.line():
            name, sep, value = line.partition(b":")
            if not sep:
                raise _incomplete("a trailer line has no ':'")
            key = name.strip().lower().decode("latin-1")
            if key == "x-amz-trailer-signature":
                signature = value.strip().decode("latin-1")
                continue
            if len(self.trailers) >= 10:
                raise _incomplete("too many trailers")
            self.trailers[key] = value.strip().decode("latin-1")
            canonical += key.encode() + b":" + value.strip() + b"\n"
        if self.auth is not None:
            if signature is None:
                raise S3Error("SignatureDoesNotMatch", "The trailer has no "
                              "x-amz-trailer-signature")
            self._check("AWS4-HMAC-SHA256-TRAILER", self.prev,
                        hashlib.sha256(canonical).hexdigest(), signature)
