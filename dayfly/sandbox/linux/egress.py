"""The egress relay: the only way out of a function's network namespace.

Instances have loopback only; the proxy environment variables point at 127.0.0.1:3128 inside
their namespace (one per instance), where the host holds the listening socket. The relay reads one HTTP proxy
request (CONNECT host:port, or an absolute-URI request for plain HTTP), checks the target
against the function's declared allow-list, and only then connects from the host's side.
A function that declares `buckets` may also address this node's S3 endpoint (by the name it
was given, `Settings.endpoint`); the relay takes that to the node's S3 listener for
functions (`Settings.function_s3`, on loopback), where the gateway serves only S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from urllib.parse import urlsplit

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
    (host, port) pairs, `node` the names of this node's S3 endpoint, reached at
    `function_s3`."""

    def __init__(self, function: str, allow: set[tuple[str, int]],
                 node: set[tuple[str, int]] | None = None,
                 function_s3: tuple[str, int] | None = None) -> None:
        self.function = function
        self.allow = allow
        self.node = node or set()
        self.function_s3 = function_s3
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
        to_node = port.isdigit() and (host, int(port)) in self.node
        if not port.isdigit() or ((host, int(port)) not in self.allow and not to_node):
            self.refused += 1
            declared = ", ".join(f"{h}:{p}" for h, p in sorted(self.allow)) or "none"
            msg = (f"dayfly: egress to {host}:{port} is not declared by function "
                   f"'{self.function}' (declared: {declared})")
            log.warning(msg)
            await self._reply(writer, 403, msg)
            return
        # the node's S3 endpoint is reached on its listener for functions: S3 only there
        upstream = self.function_s3 if to_node else (host, int(port))
        if upstream is None:
            await self._reply(writer, 502, "dayfly: this node has no S3 listener for functions")
            return
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*upstream), 10)
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
