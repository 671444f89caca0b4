"""The egress relay: the only way out of a function's network namespace.

Instances have loopback only. At each declared destination's address inside their namespace
(one per instance; endpoints.py) the host holds a listening socket, a door: what connects
there is relayed, bytes as they are, to that destination and nowhere else (native egress:
any TCP client works, no proxy settings; docs/decisions/0012-native-egress.md). In the gVisor
tier a forwarder inside the sandbox carries such connections to a host Unix socket per
destination instead, and `accept` takes them from there.

The proxy environment variables point at 127.0.0.1:3128 inside the namespace, another door,
where the relay reads one HTTP proxy request (CONNECT host:port, or an absolute-URI request
for plain HTTP), checks the target against the function's declared allow-list, and only then
connects from the host's side.
A function that declares `buckets` may also address this node's S3 endpoint (by the name it
was given, `Settings.endpoint`); the relay takes that to the node's S3 listener for
functions (`Settings.function_s3`, on loopback), where the gateway serves only S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from urllib.parse import urlsplit

from ...background import spawn
from ...numbers import digits

log = logging.getLogger("dayfly.egress")

MAX_HEAD = 16 * 1024
# Connections one function may have relayed at once on this node (native and through the
# proxy): each holds two of the node's descriptors, and the node's are shared by everything it
# serves, so a function opening thousands must not take them all. Past it a new connection is
# reset at once (the client sees ECONNRESET) and the node's log says so.
MAX_OPEN = 256


def parse_allow(entries: list[str]) -> set[tuple[str, int]]:
    out = set()
    for e in entries:
        host, _, port = e.rpartition(":")
        out.add((host.strip("[]").lower(), int(port)))
    return out


class EgressRelay:
    """Serves one function's instances, each through the listening sockets in its own network
    namespace (`attach` when it is made, `detach` once it is reaped); `allow` holds
    (host, port) pairs, `node` the names of this node's S3 endpoint, reached at
    `function_s3`; `native` maps a door's address in the namespace to its destination (a
    door at another address is the HTTP proxy's)."""

    def __init__(self, function: str, allow: set[tuple[str, int]],
                 node: set[tuple[str, int]] | None = None,
                 function_s3: tuple[str, int] | None = None,
                 native: dict[tuple[str, int], tuple[str, int]] | None = None) -> None:
        self.function = function
        self.allow = allow
        self.node = node or set()
        self.function_s3 = function_s3
        self.native = native or {}
        self.servers: dict[int, asyncio.base_events.Server] = {}  # id(door) -> its server
        self.refused = 0
        self.failed = 0  # native connections whose destination could not be reached
        self.relayed = 0  # native connections carried to their destination
        self.open = 0  # connections relayed (or being connected) now
        self.shed = 0  # connections reset because MAX_OPEN were open

    def take(self) -> bool:
        """Count a new connection in, or say it must be refused (MAX_OPEN are open)."""
        if self.open >= MAX_OPEN:
            self.shed += 1
            if self.shed == 1 or self.shed % 1000 == 0:
                log.warning("dayfly: function '%s' has %d relayed connections open, the most "
                            "one function may: new ones are reset (%d so far)", self.function,
                            self.open, self.shed)
            return False
        self.open += 1
        return True

    async def attach(self, door: socket.socket) -> None:
        door.setblocking(False)
        target = self.native.get(door.getsockname()[:2])
        if target is None:
            self.servers[id(door)] = await asyncio.start_server(self._serve, sock=door)
        else:
            loop = asyncio.get_running_loop()
            self.servers[id(door)] = await loop.create_server(
                lambda: _Inbound(self, target), sock=door)

    async def accept(self, conn: socket.socket, target: tuple[str, int]) -> None:
        """Relay a connection a gVisor sandbox's forwarder made for `target` (a declared
        destination: the host socket it came in on is that destination's)."""
        conn.setblocking(False)
        await asyncio.get_running_loop().connect_accepted_socket(
            lambda: _Inbound(self, target), conn)

    def detach(self, door: socket.socket) -> None:
        server = self.servers.pop(id(door), None)
        if server is not None:
            server.close()  # closes the listening socket; connections in flight finish
        door.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.take():
            writer.transport.abort()
            return
        try:
            await self._proxy(reader, writer)
        finally:
            self.open -= 1

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
        to_node = digits(port, 5) and (host, int(port)) in self.node
        if not digits(port, 5) or ((host, int(port)) not in self.allow and not to_node):
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


class _Half(asyncio.Protocol):
    """One side of a natively relayed connection: what it receives goes to its peer, with
    back-pressure (the peer stops reading while this side's buffer is full) and half-closes
    passed on; the pair closes once both sides have ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.ended = False  # EOF received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.ended = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.ended:
            self.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # the other direction may still carry data
        self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def close(self) -> None:
        for half in (self, self.peer):
            if half is not None and half.transport is not None:
                half.transport.close()


class _Inbound(_Half):
    """A connection from inside a sandbox to a declared destination: it is read only once the
    destination has answered (what arrives before, where the loop reads anyway, is held:
    uvloop starts reading after connection_made); if it cannot be reached, it is reset (the
    client sees ECONNRESET) and the node's log says why."""

    def __init__(self, relay: EgressRelay, target: tuple[str, int]) -> None:
        super().__init__()
        self.relay, self.target = relay, target
        self.early = b""
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.relay.take():
            _reset(transport)
            return
        self.counted = True
        transport.pause_reading()  # type: ignore[attr-defined]
        spawn(self._connect())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.relay.open -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.early += data
            if self.transport is not None and self.transport.is_reading():
                self.transport.pause_reading()
            return
        super().data_received(data)

    def eof_received(self) -> bool:
        if self.peer is None:  # before the destination answered: nothing to pass on yet
            self.ended = True
            return True
        return super().eof_received()

    async def _connect(self) -> None:
        host, port = self.target
        out = _Half()
        out.peer = self  # a destination that speaks first is heard from the start
        try:
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                lambda: out, host, port), 10)
        except (OSError, TimeoutError) as exc:
            self.relay.failed += 1
            log.warning("dayfly: function '%s' could not reach %s:%s: %s", self.relay.function,
                        host, port, exc)
            if self.transport is not None:
                _reset(self.transport)
            return
        if self.transport is None:  # the sandbox side went away meanwhile
            assert out.transport is not None
            out.transport.close()
            return
        self.relay.relayed += 1
        self.peer = out
        assert out.transport is not None
        if self.early:
            out.transport.write(self.early)
            self.early = b""
        if self.ended:  # the client half-closed while we connected
            self.ended = False
            self.eof_received()
        else:
            self.transport.resume_reading()


def _reset(transport: asyncio.BaseTransport) -> None:
    """End a connection from a sandbox with a reset, not an orderly end."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family != socket.AF_UNIX:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(1 << 20):
            dst.write(data)
            await dst.drain()
    finally:
        with contextlib.suppress(OSError):
            dst.close()
