"""Host end of an instance's stream channel: an asyncio protocol that reassembles frames."""

from __future__ import annotations

import asyncio
from collections import deque

from ..runtime import protocol

_PREFIX = protocol.PREFIX
_PLEN = _PREFIX.size


class InstanceChannel(asyncio.Protocol):
    """Sends INVOKE frames and resolves one pending reply at a time; collects LOG frames.

    A frame that arrives before anyone waits for it (READY can beat the host's `expect`) is
    kept in `early` and handed to the next `expect`.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.early: deque[tuple[int, bytes, bytes]] = deque()
        self.logs: list[str] = []
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
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
            elif self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((kind, meta, payload))
            else:
                self.early.append((kind, meta, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(EOFError())

    def expect(self) -> asyncio.Future:
        """A future for the next non-log frame."""
        self.waiter = asyncio.get_running_loop().create_future()
        if self.early:
            self.waiter.set_result(self.early.popleft())
        elif self.closed.done():
            self.waiter.set_exception(EOFError())
        return self.waiter

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    def take_logs(self) -> list[str]:
        logs, self.logs = self.logs, []
        return logs

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
