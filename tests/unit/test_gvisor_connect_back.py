"""gVisor instances connect back to a host socket and name themselves with a HELLO frame;
whatever they send right after it belongs to their channel and must reach it.

The host once read the HELLO through an asyncio stream, which reads ahead: an instance that
had already sent its READY by then lost it with the stream, and its start hung until the
10 s init timeout (every request queued for the function waited with it, or failed as an
init error). Under load that happened to most scale-ups. Here the HELLO and the READY come
in one write, the worst case, over a real Unix socket to the real accept path.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from dayfly.runtime import protocol
from dayfly.sandbox.gvisor import GvisorZygote


def _zygote(tmp_path: Path) -> GvisorZygote:
    sockets = tmp_path / "s"
    sockets.mkdir()
    return GvisorZygote("gvisor|test", tmp_path, tmp_path / "bundle", tmp_path / "state",
                        sockets)


async def test_frames_sent_right_after_hello_reach_the_instance_channel(tmp_path):
    z = _zygote(tmp_path)
    z._listen("instances.sock", z._on_instance)
    loop = asyncio.get_running_loop()
    arrived = z.arrivals["abc"] = loop.create_future()
    ready = protocol.encode(protocol.READY, {"init_ms": 1.5})
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        peer.connect(str(tmp_path / "s" / "instances.sock"))
        peer.sendall(protocol.encode(protocol.HELLO, {"id": "abc"}) + ready)
        conn = await asyncio.wait_for(arrived, 5)
        got = await asyncio.wait_for(loop.sock_recv(conn, 4096), 5)
        assert got == ready
        conn.close()
    finally:
        peer.close()
        await z.close_listeners()


async def _closed_by_host(loop: asyncio.AbstractEventLoop, peer: socket.socket) -> bool:
    try:
        return await asyncio.wait_for(loop.sock_recv(peer, 1), 5) == b""
    except ConnectionResetError:  # closed with our bytes unread
        return True


async def test_a_stranger_or_garbage_is_dropped_and_accepting_goes_on(tmp_path):
    z = _zygote(tmp_path)
    z._listen("instances.sock", z._on_instance)
    loop = asyncio.get_running_loop()
    path = str(tmp_path / "s" / "instances.sock")
    peers = []
    try:
        for junk in (protocol.encode(protocol.HELLO, {"id": "nobody-waits"}),
                     b"\xff" * 9 + b"not json",
                     protocol.encode(protocol.READY, {"id": "abc"})):
            p = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            peers.append(p)
            p.connect(path)
            p.sendall(junk)
            p.setblocking(False)
            assert await _closed_by_host(loop, p)  # nothing handed on
        arrived = z.arrivals["abc"] = loop.create_future()
        good = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        peers.append(good)
        good.connect(path)
        good.sendall(protocol.encode(protocol.HELLO, {"id": "abc"}))
        (await asyncio.wait_for(arrived, 5)).close()
    finally:
        for p in peers:
            p.close()
        await z.close_listeners()
