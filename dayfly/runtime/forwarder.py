"""Native egress in the gVisor tier: the sandbox process that owns the declared destinations.

gVisor's loopback is the sandbox's only network. For each declared destination the zygote
listens at its address there (`listen`), and this process, forked by the zygote, carries each
connection made to it to the host's Unix socket for that destination (`serve`), bytes as they
are; the host connects on (sandbox/linux/egress.py). It decides nothing: a destination is
reachable only if the host made a socket for it. One thread, non-blocking sockets; a
direction that cannot write stops reading its source until it can.
"""

from __future__ import annotations

import os
import selectors
import socket
from typing import NoReturn

CHUNK = 1 << 16


def listen(endpoints: list) -> list[tuple[socket.socket, str]]:
    """Listening sockets at each [address, port, host socket path], for `serve`."""
    out = []
    for address, port, path in endpoints:
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        s.bind((address, int(port)))
        s.listen(128)
        s.setblocking(False)
        out.append((s, path))
    return out


class _Pair:
    """A connection from inside and its host socket. `waiting[s]` holds what could not be
    written to s yet; `ended[s]` says s sent EOF."""

    def __init__(self, sel: selectors.BaseSelector, inner: socket.socket,
                 outer: socket.socket) -> None:
        self.sel = sel
        self.peer = {inner: outer, outer: inner}
        self.waiting = {inner: b"", outer: b""}
        self.ended = {inner: False, outer: False}
        for s in (inner, outer):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, self)

    def _events(self, s: socket.socket) -> int:
        ev = 0
        if not self.ended[s] and not self.waiting[self.peer[s]]:
            ev |= selectors.EVENT_READ
        if self.waiting[s]:
            ev |= selectors.EVENT_WRITE
        return ev

    def ready(self, s: socket.socket, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                self._flush(s)
            if mask & selectors.EVENT_READ:
                data = s.recv(CHUNK)
                if data:
                    self.waiting[self.peer[s]] += data
                    self._flush(self.peer[s])
                else:
                    self.ended[s] = True
                    if not self.waiting[self.peer[s]]:
                        self.peer[s].shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        if all(self.ended.values()) and not any(self.waiting.values()):
            self.close()
        else:
            self._reregister()

    def _flush(self, s: socket.socket) -> None:
        if self.waiting[s]:
            try:
                sent = s.send(self.waiting[s])
            except BlockingIOError:
                sent = 0
            self.waiting[s] = self.waiting[s][sent:]
            if not self.waiting[s] and self.ended[self.peer[s]]:
                s.shutdown(socket.SHUT_WR)

    def _reregister(self) -> None:
        for s in self.peer:
            ev = self._events(s)
            registered = s in self.sel.get_map()
            if ev and registered:
                self.sel.modify(s, ev, self)
            elif ev:
                self.sel.register(s, ev, self)
            elif registered:
                self.sel.unregister(s)

    def close(self) -> None:
        for s in self.peer:
            if s in self.sel.get_map():
                self.sel.unregister(s)
            s.close()


def serve(listeners: list[tuple[socket.socket, str]]) -> NoReturn:
    """Accept on every listener, forever; each connection goes to its host socket."""
    sel = selectors.DefaultSelector()
    for lsock, path in listeners:
        sel.register(lsock, selectors.EVENT_READ, path)
    while True:
        for key, mask in sel.select():
            if isinstance(key.data, _Pair):
                key.data.ready(key.fileobj, mask)  # type: ignore[arg-type]
                continue
            try:
                inner, _ = key.fileobj.accept()  # type: ignore[union-attr]
            except OSError:
                continue
            outer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                outer.connect(key.data)
            except OSError as exc:
                os.write(2, f"dayfly forwarder: {key.data}: {exc}\n".encode())
                inner.close()
                outer.close()
                continue
            _Pair(sel, inner, outer)
