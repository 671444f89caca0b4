"""Framing of the host <-> zygote and host <-> instance channels (see docs/runtime-protocol.md).

A frame is a 9-byte prefix `>BII` (kind, meta length, payload length), then `meta`
(a JSON object, possibly empty) and `payload` (opaque bytes).
"""

from __future__ import annotations

import json
import os
import socket
import struct

PREFIX = struct.Struct(">BII")

# host -> instance
INVOKE = ord("I")
CANCEL = ord("Q")  # {q}: stop that invocation (a shared instance's timeout); answered with its E
# instance -> host
READY = ord("Y")
INIT_ERROR = ord("X")
RESULT = ord("R")
ERROR = ord("E")
LOG = ord("L")
HELLO = ord("H")  # first frame of an instance that connected back (gVisor)
BUCKET = ord("B")  # a bucket binding request, during an invocation (may carry one fd)
CHUNK = ord("C")  # a piece of a streamed answer, during an invocation (meta may carry its head)
# host -> instance, during an invocation
ANSWER = ord("A")  # the answer to a BUCKET request (may carry one fd)
# host -> zygote
FORK = ord("F")  # meta may name a prepared spare ("spare": pid) to claim instead of forking
KILL = ord("K")
SPARE = ord("S")  # jailed tiers: prepare a confined child ahead of demand (answered with FORKED)
# zygote -> host
ZYGOTE_READY = ord("Z")
FORKED = ord("P")
DIED = ord("D")


def encode(kind: int, meta: dict | None = None, payload: bytes = b"") -> bytes:
    """One frame as bytes."""
    m = json.dumps(meta, separators=(",", ":")).encode() if meta else b""
    return PREFIX.pack(kind, len(m), len(payload)) + m + payload


def decode(frame: bytes) -> tuple[int, dict, bytes]:
    """Split one whole frame (as received on a SOCK_SEQPACKET channel)."""
    kind, mlen, plen = PREFIX.unpack_from(frame)
    start = PREFIX.size
    meta = json.loads(frame[start : start + mlen]) if mlen else {}
    return kind, meta, frame[start + mlen : start + mlen + plen]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = sock.recv(n, socket.MSG_WAITALL)
    if len(data) != n:
        raise EOFError
    return data


def read(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Read one frame from a blocking stream socket; EOFError when the peer is gone."""
    kind, mlen, plen = PREFIX.unpack(_recv_exact(sock, PREFIX.size))
    body = _recv_exact(sock, mlen + plen) if mlen + plen else b""
    return kind, (json.loads(body[:mlen]) if mlen else {}), body[mlen:]


def read_with_fds(sock: socket.socket, maxfds: int = 1) -> tuple[int, dict, bytes, list[int]]:
    """`read`, also returning the fds that travelled with the frame (SCM_RIGHTS, close-on-exec).

    On a stream socket the kernel hands fds over with the recvmsg that reads the first byte
    sent with them, and ends that recvmsg there, so the frame is read in as many calls as it
    takes; fds beyond `maxfds` are closed by the kernel.
    """
    fds: list[int] = []

    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            data, got, _, _ = socket.recv_fds(sock, n - len(buf), maxfds,
                                              socket.MSG_CMSG_CLOEXEC)
            fds.extend(got)
            if not data:
                for fd in fds:
                    os.close(fd)
                raise EOFError
            buf += data
        return buf

    kind, mlen, plen = PREFIX.unpack(exact(PREFIX.size))
    body = exact(mlen + plen) if mlen + plen else b""
    return kind, (json.loads(body[:mlen]) if mlen else {}), body[mlen:], fds
