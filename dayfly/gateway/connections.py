"""HTTP connections: read timeouts, connection caps, and the backoff a 429 asks for.

uvicorn (httptools) closes a connection only when it idles between requests
(`timeout_keep_alive`, armed after a response). A client that never finishes its headers or its
body holds its connection, and its file descriptor, forever; `limit_concurrency` answers 503
only once headers are complete, so it cannot see such clients. `GuardedHttpTools` adds, per
connection, in the order a request goes through them:

1. on accept, a client address (an IPv6 /64) with `per_client` connections open is refused
   (429, Retry-After); at `max_connections` the connection that has waited longest for
   headers (or idled longest between requests) is closed to make room, else the new one
   is refused (503). The cap sits below RLIMIT_NOFILE so the platform keeps descriptors for
   its own work (sandboxes, channels, the database) whatever clients do;
2. headers must be complete within `header_timeout_s` of the connection (or of the request's
   first byte): else 408 and close;
3. a body may go silent for at most `body_timeout_s` (while the application reads it): else
   408 and close, and the application sees a disconnect, never a short body;
4. after a response the application marked with a backoff (a 429 with Retry-After, see
   `backoff`) the connection's next request is read only once that backoff has passed: what
   the pool asked for (scheduler/pressure.py), doubled for each 429 in a row on the
   connection, at most 60 s (plus up to a quarter, at random). A client that retries at
   once cannot turn a full queue into a loop of refusals that starves the instances
   (docs/SPECIFICATION.md, overload).

Every closing and refusal is logged, at most once per `LOG_EVERY_S` per reason with counts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("dayfly.connections")

BACKOFF_KEY = "dayfly.backoff_s"  # an ASGI scope key: read this connection again after N s
STRIKES_KEY = "dayfly.strikes"  # an ASGI scope key: 429s in a row on this connection so far
MAX_BACKOFF_S = 60  # a connection refused again and again comes back once a minute
LOG_EVERY_S = 10.0
_REASONS = {
    "header": "did not send complete headers within {header} s (408, closed)",
    "body": "sent no body bytes for {body} s (408, closed)",
    "evicted": "were closed to make room at the connection limit ({max}) while they waited "
               "for headers or idled",
    "per-client": "were refused: their client already had {per_client} connections open (429)",
    "full": "were refused: {max} connections open, all busy with requests (503)",
}


@dataclass(slots=True)
class Limits:
    """What `dayfly up` configures (`--header-timeout`, `--body-timeout`, `--max-connections`,
    `--max-connections-per-client`); 0 for a cap means none."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 0
    per_client: int = 256


def default_max_connections(fd_limit: int) -> int:
    """Half the descriptors (at least 256) stay for the platform itself: an idle node already
    holds about 220 (zygotes, pooled namespaces, the database) and each instance a few more."""
    return max(64, fd_limit - max(256, fd_limit // 2))


def backoff(scope: Any, base: int = 1) -> int:
    """The seconds a 429 on this request's connection asks for (its Retry-After), recorded in
    the scope for the protocol to enforce: `base`, doubled for every 429 in a row before it."""
    wait = min(MAX_BACKOFF_S, base << min(scope.get(STRIKES_KEY, 0), 8))
    scope[BACKOFF_KEY] = wait
    return wait


def client_key(client: tuple[str, int] | None) -> str | None:
    """Who a connection counts against: its IPv4 address, or its IPv6 /64 (one host's share)."""
    if not client:
        return None
    try:
        addr = ipaddress.ip_address(client[0].split("%", 1)[0])
    except ValueError:
        return client[0]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class ThrottledLog:
    """Counts closings by reason and client; logs the first at once, then one line per period."""

    def __init__(self, limits: Limits, max_connections: int) -> None:
        self.words = {"header": limits.header_timeout_s, "body": limits.body_timeout_s,
                      "max": max_connections, "per_client": limits.per_client}
        self.counts: dict[str, Counter[str]] = {}
        self.last: dict[str, float] = {}
        self.pending: set[str] = set()

    def note(self, reason: str, client: str | None) -> None:
        self.counts.setdefault(reason, Counter())[client or "?"] += 1
        now = time.monotonic()
        wait = self.last.get(reason, -LOG_EVERY_S) + LOG_EVERY_S - now
        if wait <= 0:
            self.flush(reason)
        elif reason not in self.pending:
            self.pending.add(reason)
            asyncio.get_running_loop().call_later(wait, self.flush, reason)

    def flush(self, reason: str) -> None:
        self.pending.discard(reason)
        counts = self.counts.pop(reason, None)
        if not counts:
            return
        self.last[reason] = time.monotonic()
        top = ", ".join(f"{c} ({n})" for c, n in counts.most_common(3))
        log.warning("%d connection(s) %s; from %s", sum(counts.values()),
                    _REASONS[reason].format(**self.words), top)


class Guard:
    """What every connection of one server shares; the event loop guards it: `by_client`
    (open connections per client key) and `waiting` (connections reading headers or idle
    between requests, longest-waiting first)."""

    def __init__(self, limits: Limits, fd_limit: int) -> None:
        self.limits = limits
        self.max_connections = limits.max_connections or default_max_connections(fd_limit)
        self.by_client: Counter[str] = Counter()
        # listeners whose clients all share one address, so no per-client cap there: the
        # functions' S3 listener, where every egress relay connects from loopback
        self.shared_listeners: set[tuple[str, int]] = set()
        self.waiting: OrderedDict[GuardedHttpTools, None] = OrderedDict()
        self.log = ThrottledLog(limits, self.max_connections)


def _reply(status: bytes, retry_after: bool = False) -> bytes:
    body = status.split(b" ", 1)[1] + b"\n"
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            + (b"retry-after: 1\r\n" if retry_after else b"")
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)


_408 = _reply(b"408 Request Timeout")
_429 = _reply(b"429 Too Many Requests", retry_after=True)
_503 = _reply(b"503 Service Unavailable", retry_after=True)


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guards in the module docstring."""

    guard: Guard  # set on the subclass `protocol_class` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._key: str | None = None
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None  # the header or the body deadline
        self._backoff: asyncio.TimerHandle | None = None
        self._strikes = 0  # 429s in a row on this connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        g = self.guard
        self._key = client_key(self.client)
        if self.server in g.shared_listeners:
            self._key = None
        if self._key is not None and g.limits.per_client and \
                g.by_client[self._key] >= g.limits.per_client:
            self._refuse("per-client", _429)
            return
        if len(self.connections) > g.max_connections:
            if not g.waiting:
                self._refuse("full", _503)
                return
            victim = next(iter(g.waiting))  # reading headers (408) or idle (just closed)
            victim._close("evicted", _408 if victim._timer is not None else None)
        self._counted = True
        if self._key is not None:
            g.by_client[self._key] += 1
        self._arm(self.guard.limits.header_timeout_s, "header")
        g.waiting[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._backoff is not None:
            self._backoff.cancel()
        self.guard.waiting.pop(self, None)
        if self._counted:
            self._counted = False
            if self._key is not None:
                left = self.guard.by_client[self._key] - 1
                if left:
                    self.guard.by_client[self._key] = left
                else:
                    del self.guard.by_client[self._key]
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._strikes:
            self.scope[STRIKES_KEY] = self._strikes  # type: ignore[literal-required]
        if self._timer is None:  # a kept-alive connection's next request: its headers' deadline
            self._arm(self.guard.limits.header_timeout_s, "header")

    def on_headers_complete(self) -> None:
        self._disarm()
        self.guard.waiting.pop(self, None)
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm(self.guard.limits.body_timeout_s, "body")

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not cycle.body and not cycle.response_complete and not self.parser.should_upgrade():
            # what uvicorn does, without its two copies (into its bytearray, and out of it in
            # `receive`): a chunk the application has not read yet is kept as the bytes it came
            # in, which `receive`'s bytes() hands on as they are (a large upload's main-thread
            # CPU was a quarter memmove)
            cycle.body = body  # type: ignore[assignment]
            if len(body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.message_event.set()
        else:
            if isinstance(cycle.body, bytes):  # more before a read (many small chunks of one
                cycle.body = bytearray(cycle.body)  # receive): appended in place, as uvicorn
            super().on_body(body)
        if self._timer is not None:
            self._disarm()
            self._arm(self.guard.limits.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self.cycle is None or not self.cycle.response_complete:
            return  # closing, or a pipelined request has started
        self.guard.waiting[self] = None
        backoff: float | None = self.cycle.scope.get(BACKOFF_KEY)  # type: ignore[assignment]
        if not backoff:
            self._strikes = 0
        else:
            self._strikes += 1
            self.flow.pause_reading()
            # not idle but held back: the keep-alive timeout restarts when reading does (else
            # it would close the connection, and a new one starts again at 1 s)
            self._unset_keepalive_if_required()
            # up to a quarter longer, at random: callers refused together come back apart
            self._backoff = self.loop.call_later(backoff * (1 + random.random() / 4),
                                                 self._resume)

    def _resume(self) -> None:
        self._backoff = None
        if not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)
            self.flow.resume_reading()

    def _arm(self, seconds: float, what: str) -> None:
        if seconds > 0:
            self._timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str) -> None:
        self._timer = None
        waiting_on_us = self.flow.read_paused or (  # the application is not reading, or has
            self.cycle is not None and self.cycle.waiting_for_100_continue)  # not said go on
        if what == "body" and waiting_on_us:  # not the client's delay
            self._arm(self.guard.limits.body_timeout_s, what)
            return
        answered = self.cycle is not None and self.cycle.response_started  # no second reply
        self._close(what, None if answered else _408)

    def _close(self, reason: str, reply: bytes | None) -> None:
        self.guard.waiting.pop(self, None)
        self.guard.log.note(reason, self._key)
        if not self.transport.is_closing():
            if reply is not None:
                self.transport.write(reply)
            self.transport.close()

    def _refuse(self, reason: str, reply: bytes) -> None:
        self.guard.log.note(reason, self._key)
        self.transport.write(reply)
        self.transport.close()


def protocol_class(limits: Limits, fd_limit: int) -> type[GuardedHttpTools]:
    """The protocol class for one server (uvicorn.Config(http=...)), with its own Guard."""
    return type("GuardedHttpTools", (GuardedHttpTools,), {"guard": Guard(limits, fd_limit)})
