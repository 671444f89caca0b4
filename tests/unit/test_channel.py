"""The host end of an instance's channel over a real socketpair: frames in pieces, fds that
travel with frames (claimed, or closed when nothing claims them), and writes that queue while
the socket is full."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from dayfly.runtime import protocol
from dayfly.sandbox.channel import InstanceChannel


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_frames_arrive_whole_however_they_are_cut():
    host, inst = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = InstanceChannel(host)
    reply = chan.expect()
    data = (protocol.encode(protocol.LOG, None, b"hello ")
            + protocol.encode(protocol.RESULT, {"ns": 1, "rss": 2}, b'"ok"'))
    for i in range(len(data)):
        inst.send(data[i:i + 1])
        await asyncio.sleep(0)
    kind, _meta, payload = await asyncio.wait_for(reply, 2)
    assert (kind, payload) == (protocol.RESULT, b'"ok"') and chan.take_logs() == ["hello "]
    chan.close()
    inst.close()


async def test_a_bucket_frame_claims_the_fd_sent_with_it():
    host, inst = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = InstanceChannel(host)
    claimed = []
    chan.on_bucket = lambda meta: claimed.append((meta, chan.take_fd()))
    fd = os.memfd_create("body")
    socket.send_fds(inst, [protocol.encode(protocol.BUCKET, {"op": "put", "fd": 1})], [fd])
    await settle()
    (meta, got), = claimed
    assert b'"put"' in meta and got >= 0
    assert os.fstat(got).st_ino == os.fstat(fd).st_ino
    for f in (fd, got):
        os.close(f)
    chan.close()
    inst.close()


async def test_fds_no_frame_claims_are_closed_at_once():
    host, inst = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = InstanceChannel(host)
    before = open_fds()
    fd = os.memfd_create("stray")
    for _ in range(20):  # with LOG frames, which claim nothing: the host must not keep them
        socket.send_fds(inst, [protocol.encode(protocol.LOG, None, b"x")], [fd, fd, fd])
    await settle()
    os.close(fd)
    assert open_fds() == before
    assert "".join(chan.take_logs()) == "x" * 20
    chan.close()
    inst.close()


async def test_sends_queue_while_the_socket_is_full_and_carry_their_fds():
    host, inst = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = InstanceChannel(host)
    big = b"y" * (1 << 20)
    for i in range(8):  # more than the socket buffer holds: the rest waits in the channel
        chan.send(protocol.encode(protocol.INVOKE, {"i": i}, big))
    fd = os.memfd_create("answer")
    os.write(fd, b"content")
    ino = os.fstat(fd).st_ino
    chan.send(protocol.encode(protocol.ANSWER, {"n": 1}), [dup := os.dup(fd)])
    assert chan.out  # queued, fds included
    inst.setblocking(True)
    loop = asyncio.get_running_loop()
    frames = []
    for _ in range(9):
        kind, meta, payload, fds = await loop.run_in_executor(
            None, protocol.read_with_fds, inst)
        frames.append((kind, meta, len(payload), fds))
    assert [m.get("i") for _, m, _, _ in frames[:8]] == list(range(8))
    kind, meta, _, fds = frames[8]
    assert (kind, meta) == (protocol.ANSWER, {"n": 1}) and len(fds) == 1
    assert os.pread(fds[0], 7, 0) == b"content"
    os.close(fds[0])
    os.close(fd)
    await settle()
    assert not chan.out
    try:  # the channel closed its copy once it was sent (the number may be reused since)
        kept = os.fstat(dup).st_ino == ino
    except OSError:
        kept = False
    assert not kept
    chan.close()
    inst.close()


async def test_the_reply_fails_with_eof_when_the_instance_goes_away():
    host, inst = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = InstanceChannel(host)
    reply = chan.expect()
    inst.close()
    with pytest.raises(EOFError):
        await asyncio.wait_for(reply, 2)
    assert chan.closed.done()
    chan.send(protocol.encode(protocol.INVOKE, {}))  # harmless after the end
