"""Host end of an instance's stream channel: frames in and out, and the fds that travel with them.

Read with recvmsg, so an fd an instance sends with a frame (a bucket binding's put) arrives with
that frame: on a stream socket the kernel hands fds over with the recvmsg that reads the first
byte sent with them. Received fds wait in `fds` for the frame that claims them (`take_fd`); any
left once every whole frame received so far is handled are closed, so an instance cannot pile
fds up in the host. Writes go straight to the socket and are queued only when it is full.

At the end `short` tells whether the last frame sent never reached the instance in full: it was
not all written, or the instance ended with it unread (the kernel then answers our read with
ECONNRESET instead of an end of file). The instance cannot have acted on that frame.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence

import orjson

from ..runtime import protocol

_PREFIX = protocol.PREFIX
_PLEN = _PREFIX.size
_READ = 256 * 1024
_MAX_FDS = 2  # per recvmsg; the kernel closes any beyond (MSG_CTRUNC)
_ANCILLARY = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)


def frame(kind: int, meta: dict | None = None, payload: bytes = b"") -> bytes:
    """`protocol.encode` on the host, where orjson is at hand (the sandbox side stays standard
    library only): the same bytes, a few microseconds sooner on the warm path."""
    m = orjson.dumps(meta) if meta else b""
    return _PREFIX.pack(kind, len(m), len(payload)) + m + payload


class InstanceChannel:
    """Sends frames and resolves one pending reply at a time; collects LOG frames and hands
    BUCKET frames to `on_bucket` (the instance's binding, sandbox/bindings.py).

    A frame that arrives before anyone waits for it (READY can beat the host's `expect`) is
    kept in `early` and handed to the next `expect`.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.rbuf = bytearray(_READ)  # what one recvmsg_into fills (no allocation per read)
        self.rview = memoryview(self.rbuf)
        self.fds: deque[int] = deque()  # received, not claimed by a frame yet
        self.out: deque[tuple[memoryview, list[int]]] = deque()  # unsent bytes (and their fds)
        self.waiter: asyncio.Future | None = None
        self.early: deque[tuple[int, bytes, bytes]] = deque()
        self.logs: list[str] = []
        self.on_bucket: Callable[[bytes], None] | None = None
        self.on_chunk: Callable[[bytes, bytes], None] | None = None  # a streamed invocation's
        self.paused = False  # reading stops while a streamed answer's reader is behind
        self.closed = self.loop.create_future()
        self.sent = 0  # frames handed to `send`
        self.short = False  # the last frame sent was not read in full by the instance (above)
        self.loop.add_reader(sock.fileno(), self._readable)

    # -- reading --------------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            n, ancillary, _, _ = self.sock.recvmsg_into([self.rbuf], _ANCILLARY,
                                                        socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:  # it ended with bytes we sent unread
            n, ancillary, self.short = 0, [], True
        except OSError:
            n, ancillary = 0, []
        for level, kind, cdata in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
                self.fds.extend(fds)
        if not n:
            self._lost()
            return
        self._frames(self.rview[:n])
        if self.fds and (not self.buf or len(self.fds) > _MAX_FDS):
            self._drop_fds()  # no frame claimed them (or an instance is piling them up)

    def _frames(self, data: memoryview) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= _PLEN:
            kind, mlen, plen = _PREFIX.unpack_from(buf)
            end = _PLEN + mlen + plen
            if len(buf) < end:
                return
            meta = bytes(buf[_PLEN : _PLEN + mlen])
            payload = bytes(buf[_PLEN + mlen : end])
            del buf[:end]
            if kind == protocol.LOG:
                self.logs.append(payload.decode("utf-8", "replace"))
            elif kind == protocol.CHUNK:
                if self.on_chunk is not None:  # else not asked for: dropped
                    self.on_chunk(meta, payload)
            elif kind == protocol.BUCKET and self.on_bucket is not None:
                self.on_bucket(meta)
            elif self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((kind, meta, payload))
            else:
                self.early.append((kind, meta, payload))

    def take_fd(self) -> int:
        """The oldest fd received and not claimed yet (the claimer closes it), or -1."""
        return self.fds.popleft() if self.fds else -1

    def _drop_fds(self) -> None:
        while self.fds:
            os.close(self.fds.popleft())

    def expect(self) -> asyncio.Future:
        """A future for the next non-log frame."""
        self.waiter = self.loop.create_future()
        if self.early:
            self.waiter.set_result(self.early.popleft())
        elif self.closed.done():
            self.waiter.set_exception(EOFError())
        return self.waiter

    def take_logs(self) -> list[str]:
        logs, self.logs = self.logs, []
        return logs

    def pause(self) -> None:
        """Stop reading (the instance blocks once the socket is full) until `resume`."""
        if not self.paused and not self.closed.done():
            self.paused = True
            self.loop.remove_reader(self.sock.fileno())

    def resume(self) -> None:
        if self.paused and not self.closed.done():
            self.paused = False
            self.loop.add_reader(self.sock.fileno(), self._readable)

    # -- writing --------------------------------------------------------------------------------

    def send(self, frame: bytes, fds: Sequence[int] = ()) -> None:
        """Send a frame, with `fds` attached (they are the channel's now: closed once sent, or
        when the channel closes first)."""
        owned = list(fds)
        self.sent += 1
        if self.closed.done():
            self.short = True
            _close(owned)
            return
        if self.out:
            self.out.append((memoryview(frame), owned))
            return
        try:
            sent = self._write(memoryview(frame), owned)
        except OSError:  # the instance is gone: the reader sees EOF and says so
            self.short = True
            _close(owned)
            return
        if sent < len(frame):
            self.out.append((memoryview(frame)[sent:], owned if not sent else []))
            self.loop.add_writer(self.sock.fileno(), self._writable)

    def _write(self, data: memoryview, fds: list[int]) -> int:
        """Bytes written now (0 if the socket is full); fds go with the first byte."""
        try:
            if fds:
                sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                   array.array("i", fds))])
                _close(fds)
                return sent
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    def _writable(self) -> None:
        while self.out:
            data, fds = self.out[0]
            try:
                sent = self._write(data, fds)
            except OSError:
                self._lost()
                return
            if sent < len(data):
                self.out[0] = (data[sent:], fds if not sent else [])
                return
            self.out.popleft()
        self.loop.remove_writer(self.sock.fileno())

    # -- the end --------------------------------------------------------------------------------

    def _lost(self) -> None:
        if self.closed.done():
            return
        with contextlib.suppress(ValueError, OSError):  # fileno -1: closed already
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self._drop_fds()
        self.short = self.short or bool(self.out)
        for _, fds in self.out:
            _close(fds)
        self.out.clear()
        self.closed.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(EOFError())

    def close(self) -> None:
        self._lost()


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    fds.clear()


class SharedChannel(InstanceChannel):
    """The channel of an instance that serves several invocations at once (concurrency > 1):
    RESULT, ERROR, LOG and CHUNK frames carry their invocation's id (`q`) and go to its waiter,
    logs and stream; READY and INIT_ERROR (no `q`) are `expect`'s as before. A LOG without `q`
    (code outside any invocation) goes to `logs`, which the next invocation to end takes."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.calls: dict[str, asyncio.Future] = {}  # invocation id -> its reply
        self.call_logs: dict[str, list[str]] = {}
        self.call_chunks: dict[str, Callable[[bytes, bytes], None]] = {}
        self.cancelled: dict[str, tuple[asyncio.Future, str]] = {}  # -> (its E came, why)

    def _frames(self, data: memoryview) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= _PLEN:
            kind, mlen, plen = _PREFIX.unpack_from(buf)
            end = _PLEN + mlen + plen
            if len(buf) < end:
                return
            meta = bytes(buf[_PLEN : _PLEN + mlen])
            payload = bytes(buf[_PLEN + mlen : end])
            del buf[:end]
            q = _q(meta) if mlen and kind != protocol.READY else None
            if q is None:
                if kind == protocol.LOG:
                    self.logs.append(payload.decode("utf-8", "replace"))
                elif kind == protocol.BUCKET and self.on_bucket is not None:
                    self.on_bucket(meta)  # answered: no bindings with concurrency > 1
                elif kind not in (protocol.READY, protocol.INIT_ERROR):
                    continue  # an answer that names no invocation: nobody's (dropped)
                elif self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result((kind, meta, payload))
                else:
                    self.early.append((kind, meta, payload))
            elif kind == protocol.LOG:
                logs = self.call_logs.get(q)
                if logs is not None:  # else a cancelled invocation's: its answer is gone
                    logs.append(payload.decode("utf-8", "replace"))
            elif kind == protocol.CHUNK:
                on_chunk = self.call_chunks.get(q)
                if on_chunk is not None:
                    on_chunk(meta, payload)
            else:  # RESULT or ERROR
                fut = self.calls.pop(q, None)
                if fut is not None and not fut.done():
                    fut.set_result((kind, meta, payload))
                elif q in self.cancelled:
                    done, _ = self.cancelled.pop(q)
                    if not done.done():
                        done.set_result(None)

    def cancel(self, q: str, why: str) -> asyncio.Future:
        """Ask the instance to stop invocation `q`; the future is done once it has. `why`
        explains the failure of the others if the instance dies meanwhile."""
        done = self.loop.create_future()
        self.cancelled[q] = (done, why)
        self.send(protocol.encode(protocol.CANCEL, {"q": q}))
        return done

    def why_lost(self) -> str | None:
        """Why the instance was killed under the invocations it served, if a cancel said so."""
        return next((why for _, why in self.cancelled.values()), None)

    def _lost(self) -> None:
        if self.closed.done():
            return
        super()._lost()
        calls, self.calls = self.calls, {}
        for fut in calls.values():
            if not fut.done():
                fut.set_exception(EOFError())
        for done, _ in self.cancelled.values():
            if not done.done():
                done.set_result(None)


def _q(meta: bytes) -> str | None:
    """The invocation a shared instance's frame names (its meta's `q`), if it names one."""
    try:
        q = orjson.loads(meta).get("q")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return q if isinstance(q, str) else None
