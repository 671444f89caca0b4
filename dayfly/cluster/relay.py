"""Kept-alive HTTP/1.1 connections to peer nodes, on raw asyncio streams: the forwarding client.

A relayed invoke is one request and one reply between two dayfly gateways, so the client needs
little of HTTP: a request with a Content-Length body, and a reply framed by Content-Length,
chunked encoding or the end of the connection. It costs a fraction of a general client's time
per request (benchmarks/forward.py measured httpx's own overhead at more than the 0.5 ms the
whole forward may add). Idle connections are reused newest first and dropped after
IDLE_S, below uvicorn's 5 s keep-alive, so a peer does not close one as it is reused; a reused
connection that the peer closed anyway, before answering a byte, is retried once on a new one.
Event loop only: `idle` (per address, the connections not in use) is touched nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

IDLE_S = 4.0
MAX_IDLE = 64  # idle connections kept per peer
MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024  # an invoke reply is at most 6 MB (Lambda's limit) plus errors


class Unreachable(ConnectionError):
    """No connection to the peer could be made: nothing was sent."""


class Broken(ConnectionError):
    """The peer's reply was cut off or malformed: the request may have run."""


class Reply:
    """A peer's reply: status, headers (names lower-case, in order) and the whole body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class _Conn:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = time.monotonic()

    def usable(self, now: float) -> bool:
        return (now - self.used < IDLE_S and not self.writer.is_closing()
                and not self.reader.at_eof())

    def close(self) -> None:
        self.writer.close()


class Relay:
    """A pool of kept-alive connections per peer address (`http://host:port`)."""

    def __init__(self, connect_timeout_s: float = 2.0) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.idle: dict[str, list[_Conn]] = {}

    async def request(self, base: str, method: str, target: str,
                      headers: Iterable[tuple[str, str]], body: bytes, timeout_s: float) -> Reply:
        """Send one request to the peer at `base` and read its whole reply."""
        head = _head(base, method, target, headers, len(body))
        async with asyncio.timeout(timeout_s):
            conn, reused = await self._acquire(base)
            try:
                reply = await _exchange(conn, head, body)
            except _Closed:
                conn.close()
                if not reused:
                    raise Broken("the peer closed the connection without answering") from None
                conn, _ = await self._connect(base)  # a stale kept-alive connection: once more
                try:
                    reply = await _exchange(conn, head, body)
                except BaseException:
                    conn.close()
                    raise
            except BaseException:  # cancelled, timed out, broken: the connection is not reusable
                conn.close()
                raise
        if reply.header("connection") == "close":
            conn.close()
        else:
            self._release(base, conn)
        return reply

    async def _acquire(self, base: str) -> tuple[_Conn, bool]:
        pool = self.idle.get(base)
        now = time.monotonic()
        while pool:
            conn = pool.pop()
            if conn.usable(now):
                return conn, True
            conn.close()
        return await self._connect(base)

    async def _connect(self, base: str) -> tuple[_Conn, bool]:
        url = urlsplit(base)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"cannot connect to {base}: {exc or type(exc).__name__}") from None
        return _Conn(reader, writer), False

    def _release(self, base: str, conn: _Conn) -> None:
        conn.used = time.monotonic()
        pool = self.idle.setdefault(base, [])
        if len(pool) < MAX_IDLE:
            pool.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        conns = [c for pool in self.idle.values() for c in pool]
        self.idle.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()


class _Closed(Exception):
    """The connection ended before the first byte of a reply."""


def _head(base: str, method: str, target: str, headers: Iterable[tuple[str, str]],
          length: int) -> bytes:
    host = base.partition("://")[2].partition("/")[0]
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}", f"content-length: {length}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _exchange(conn: _Conn, head: bytes, body: bytes) -> Reply:
    conn.writer.write(head + body if len(body) < 65536 else head)
    if len(body) >= 65536:
        conn.writer.write(body)
    await conn.writer.drain()
    reader = conn.reader
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _Closed() from None
        raise Broken("the peer's reply ended inside its headers") from None
    except (ConnectionError, asyncio.LimitOverrunError) as exc:
        raise Broken(f"reading the peer's reply failed: {type(exc).__name__}") from None
    lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise Broken(f"the peer answered no HTTP/1.1 status line: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise Broken("the peer's reply has a malformed header line")
        headers.append((name.strip().lower(), value.strip()))
    reply = Reply(int(parts[1]), headers, b"")
    try:
        reply.body = await _body(reader, reply)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
            ValueError) as exc:
        raise Broken(f"the peer's reply body was cut off: {type(exc).__name__}") from None
    return reply


async def _body(reader: asyncio.StreamReader, reply: Reply) -> bytes:
    if reply.status in (204, 304) or 100 <= reply.status < 200:
        return b""
    chunks: list[bytes] = []
    size = 0
    if (reply.header("transfer-encoding") or "").lower() == "chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            n = int(line.split(b";", 1)[0], 16)
            if n == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            size += n
            if size > MAX_BODY:
                raise ValueError("reply too large")
            chunks.append(await reader.readexactly(n))
            await reader.readexactly(2)
    length = reply.header("content-length")
    if length is not None:
        n = int(length)
        if not 0 <= n <= MAX_BODY:
            raise ValueError("reply too large")
        return await reader.readexactly(n)
    reply.headers.append(("connection", "close"))  # delimited by the end of the connection
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise ValueError("reply too large")
        chunks.append(chunk)
    return b"".join(chunks)
