"""The egress relay: the only way out of a function's network namespace.

Instances have loopback only; the proxy environment variables point at 127.0.0.1:3128 inside
their namespace (one per instance), where the host holds the listening socket. The relay reads one HTTP proxy
request (CONNECT host:port, or an absolute-URI request for plain HTTP), checks the target
against the function's declared allow-list, and only then connects from the host's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from urllib.parse import urlsplit

from ...config import FUNCTION_S3_SOURCE

log = logging.getLogger("dayfly.egress")

MAX_HEAD = 16 * 1024


def parse_allow(entries: list[str]) -> set[tuple[str, int]]:
    out = set()
    for e in entries:
        host, _, port = e.rpartition(":")
        out.add((host.strip("[]").lower(), int(port)))
    return out


class EgressRelay:
    """Serves one function's instances, each through the listening socket in its own network
    namespace (`attach` when it is made, `detach` once it is reaped); `allow` holds
    (host, port) pairs."""

    def __init__(self, function: str, allow: set[tuple[str, int]],
                 s3_only: set[tuple[str, int]] | None = None) -> None:
        self.function = function
        self.allow = allow
        self.s3_only = s3_only or set()  # this node's S3 endpoint: reached from a marked address
        self.servers: dict[int, asyncio.base_events.Server] = {}  # id(door) -> its server
        self.refused = 0

    async def attach(self, door: socket.socket) -> None:
        door.setblocking(False)
        self.servers[id(door)] = await asyncio.start_server(self._serve, sock=door)

    def detach(self, door: socket.socket) -> None:
        server = self.servers.pop(id(door), None)
        if server is not None:
            server.close()  # closes the listening socket; connections in flight finish
        door.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        if len(head) > MAX_HEAD:
            await self._reply(writer, 431, "request header too large")
            return
        line, _, rest = head.partition(b"\r\n")
        try:
            method, target, version = line.decode("latin-1").split(" ", 2)
        except ValueError:
            await self._reply(writer, 400, "not an HTTP proxy request")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            forward = b""
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                await self._reply(writer, 400, "only CONNECT and absolute http:// URLs are relayed")
                return
            host, port = url.hostname, str(url.port or 80)
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            forward = f"{method} {path} {version}\r\n".encode("latin-1") + rest
        host = host.strip("[]").lower()
        marked = port.isdigit() and (host, int(port)) in self.s3_only
        if not port.isdigit() or ((host, int(port)) not in self.allow and not marked):
            self.refused += 1
            declared = ", ".join(f"{h}:{p}" for h, p in sorted(self.allow)) or "none"
            msg = (f"dayfly: egress to {host}:{port} is not declared by function "
                   f"'{self.function}' (declared: {declared})")
            log.warning(msg)
            await self._reply(writer, 403, msg)
            return
        try:
            # from FUNCTION_S3_SOURCE, the gateway answers only S3 requests on this connection
            source = (FUNCTION_S3_SOURCE, 0) if marked else None
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection(host, int(port), local_addr=source), 10)
        except (OSError, TimeoutError) as exc:
            await self._reply(writer, 502, f"dayfly: cannot reach {host}:{port}: {exc}")
            return
        if forward:
            up_w.write(forward)
        else:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer), return_exceptions=True)

    async def _reply(self, writer: asyncio.StreamWriter, status: int, msg: str) -> None:
        body = (msg + "\n").encode()
        writer.write(f"HTTP/1.1 {status} {msg[:60]}\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        servers, self.servers = list(self.servers.values()), {}
        for server in servers:
            server.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(1 << 20):
            dst.write(data)
            await dst.drain()
    finally:
        with contextlib.suppress(OSError):
            dst.close()
