"""The durable event queue seam: `Queue` (the interface), `EventQueue` (SQLite WAL, one node)
and `stores.jsqueue.JetStreamQueue` (a cluster). An event is stored before it is acknowledged
and leaves only when it succeeded or was dead-lettered, so a crash at any moment loses nothing.

An event either invokes a function (`target` None) or posts to a webhook (`target` a URL,
for destinations). `chain` lists the functions whose work caused it, oldest first, so
recursive loops can be stopped. Its `id` is its idempotency key across redeliveries.
`attempts` counts the tries that ran (or failed to start) its function; `throttles` the tries
refused for concurrency, which are no attempts (a dead letter keeps both).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .db import Database

_COLS = ("id, function, qualifier, payload, trigger, attempts, not_before, created, chain, target, "
         "throttles")
_MARKS = ",".join("?" * len(_COLS.split(", ")))
_DEAD_COLS = ("id, function, qualifier, payload, trigger, attempts, created, failed, error, "
              "chain, target, throttles")
_EVENT_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _COLS.split(", ")[1:])
_DEAD_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _DEAD_COLS.split(", ")[1:])


@dataclass(slots=True)
class Event:
    """One queued delivery."""

    id: str
    function: str
    qualifier: str | None
    payload: bytes
    trigger: str
    attempts: int = 0
    not_before: float = 0.0
    created: float = 0.0
    chain: list[str] = field(default_factory=list)
    target: str | None = None
    throttles: int = 0
    # the backend's handle on this delivery (JetStream: the message to ack); never stored
    receipt: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Event:
        d = dict(row)
        d["chain"] = json.loads(d["chain"] or "[]")
        return cls(**{k: d[k] for k in _COLS.split(", ")})

    def row(self) -> tuple[Any, ...]:
        return (self.id, self.function, self.qualifier, self.payload, self.trigger,
                self.attempts, self.not_before, self.created, json.dumps(self.chain), self.target,
                self.throttles)


@dataclass(slots=True)
class QueueSummary:
    """What waits, per function: queued events, the oldest one's creation time, dead letters."""

    events: dict[str, int]
    oldest_created: float | None
    dead: dict[str, int]


class Queue(ABC):
    """What the dispatcher, the gateway and the triggers need from a durable queue.

    1. `put` returns only once the event is stored durably (the caller answers 202 after it);
       an id already queued is stored once (the id is the idempotency key).
    2. `take` hands out due events not being delivered anywhere; each delivery ends in
       exactly one of `ack`, `retry`, `dead_letter` or `release`.
    3. `retry` keeps the event with the counts (attempts, throttles) the caller left on it,
       due again after the delay; a delivery whose node dies is handed out again.
    4. Dead letters keep every field plus the error and the time of failure, per function.
    """

    async def start(self) -> None:
        """Prepare the backend (streams, consumers); before the first call."""
        return None

    async def close(self) -> None:
        """Stop background work; deliveries not ended are handed out again later."""
        return None

    @abstractmethod
    async def put(self, function: str, qualifier: str | None, payload: bytes,
                  trigger: str = "event", *, chain: list[str] | None = None,
                  target: str | None = None, event_id: str | None = None) -> str:
        """Store an event durably and return its id (the caller may acknowledge after this)."""

    @abstractmethod
    async def take(self, limit: int, wait_s: float) -> list[Event]:
        """Up to `limit` due events, waiting at most `wait_s` for the first one."""

    @abstractmethod
    async def ack(self, ev: Event) -> None:
        """The delivery succeeded: the event leaves the queue."""

    @abstractmethod
    async def retry(self, ev: Event, delay_s: float) -> None:
        """Due again after `delay_s`, with its counts as the caller left them."""

    @abstractmethod
    async def dead_letter(self, ev: Event, error: str) -> None:
        """Move the event to the dead-letter queue."""

    @abstractmethod
    async def release(self, ev: Event) -> None:
        """The delivery stopped without a verdict (shutdown): hand the event out again."""

    @abstractmethod
    async def depth(self, function: str | None = None) -> int:
        """Events queued (waiting or being delivered), of one function or of all."""

    @abstractmethod
    async def summary(self) -> QueueSummary:
        """Queued events and dead letters per function, for the dashboard."""

    @abstractmethod
    async def dead(self, function: str | None = None, limit: int = 100,
                   event_id: str | None = None) -> list[dict[str, Any]]:
        """Dead letters, newest first: every event field (payload as text) + failed, error."""

    @abstractmethod
    async def redrive(self, function: str, ids: list[str] | None = None) -> int:
        """Move dead letters back into the queue with fresh counts; how many moved."""

    @abstractmethod
    async def purge(self, function: str, ids: list[str] | None = None) -> int:
        """Delete dead letters; how many went."""


class EventQueue(Queue):
    """Events by due time in SQLite; `in_flight` (event-loop only) stops double dispatch
    within a run, `fresh` hands events this process stored straight to `take`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.wakeup = asyncio.Event()
        self.in_flight: set[str] = set()
        # events stored by this process and due now: delivered without reading them back
        self.fresh: deque[Event] = deque()
        self._done: deque[str] = deque(maxlen=4096)  # recently finished ids, so an event read
        self._done_set: set[str] = set()  # back from disk and also fresh is delivered once

    async def put(self, function: str, qualifier: str | None, payload: bytes,
                  trigger: str = "event", *, chain: list[str] | None = None,
                  target: str | None = None, event_id: str | None = None) -> str:
        """Store an event durably and return its id (the caller may acknowledge after this)."""
        now = time.time()
        ev = Event(event_id or str(uuid.uuid4()), function, qualifier, payload, trigger, 0, now,
                   now, list(chain or []), target)
        await self.db.run(lambda c: c.execute(
            f"INSERT INTO events({_COLS}) VALUES ({_MARKS}) ON CONFLICT(id) DO NOTHING",
            ev.row()))
        self.fresh.append(ev)
        self.wakeup.set()
        return ev.id

    async def take(self, limit: int, wait_s: float) -> list[Event]:
        deadline = time.monotonic() + wait_s
        while True:
            self.wakeup.clear()  # before reading: a put from now on wakes the wait below
            events = self.take_fresh(limit) or await self.due(limit)
            if events:
                self.in_flight.update(ev.id for ev in events)
                return events
            nxt = await self.next_due()
            wait = deadline - time.monotonic()
            if wait <= 0:
                return []
            if nxt is not None:
                wait = min(wait, nxt - time.time())
            if wait > 0:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                with contextlib.suppress(TimeoutError):  # cancel that meets a wakeup
                    async with asyncio.timeout(wait):
                        await self.wakeup.wait()

    def take_fresh(self, limit: int) -> list[Event]:
        """Events just stored by this process (the fast path: no read from disk)."""
        out: list[Event] = []
        while self.fresh and len(out) < limit:
            ev = self.fresh.popleft()
            if ev.id not in self.in_flight and ev.id not in self._done_set:
                out.append(ev)
        return out

    async def due(self, limit: int) -> list[Event]:
        """Events whose time has come and that are not already being delivered."""
        now = time.time()
        skip = set(self.in_flight)

        def read(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(f"SELECT {_COLS} FROM events WHERE not_before <= ? "
                                "ORDER BY not_before LIMIT ?", (now, limit + len(skip)))
            return [Event.from_row(r) for r in rows if r["id"] not in skip][:limit]
        return await self.db.run(read)

    async def next_due(self) -> float | None:
        """When the next event not being delivered comes due (None: no other event waits).
        Events in flight are left out: they are due already, so counting them made the
        dispatcher poll the database without pause for as long as one ran; one that fails
        comes back through `retry`, and the end of every delivery wakes the dispatcher."""
        skip = set(self.in_flight)

        def read(conn: sqlite3.Connection) -> float | None:
            rows = conn.execute("SELECT id, not_before FROM events ORDER BY not_before LIMIT ?",
                                (len(skip) + 1,))
            return next((r[1] for r in rows if r[0] not in skip), None)
        return await self.db.run(read)

    def _ended(self, ev_id: str, finished: bool = False) -> None:
        """A delivery ended; `finished`: the event left the queue."""
        if finished:
            if len(self._done) == self._done.maxlen:
                self._done_set.discard(self._done[0])
            self._done.append(ev_id)
            self._done_set.add(ev_id)
        self.in_flight.discard(ev_id)
        self.wakeup.set()

    async def ack(self, ev: Event) -> None:
        await self.db.run(lambda c: c.execute("DELETE FROM events WHERE id = ?", (ev.id,)))
        self._ended(ev.id, finished=True)

    async def retry(self, ev: Event, delay_s: float) -> None:
        await self.db.run(lambda c: c.execute(
            "UPDATE events SET attempts = ?, throttles = ?, not_before = ? WHERE id = ?",
            (ev.attempts, ev.throttles, time.time() + delay_s, ev.id)))
        self._ended(ev.id)

    async def release(self, ev: Event) -> None:
        self._ended(ev.id)

    async def dead_letter(self, ev: Event, error: str) -> None:
        def move(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO dead_letters({_DEAD_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                         f"ON CONFLICT(id) DO UPDATE SET {_DEAD_UPDATE}",
                         (ev.id, ev.function, ev.qualifier, ev.payload, ev.trigger,
                          ev.attempts, ev.created, time.time(), error,
                          json.dumps(ev.chain), ev.target, ev.throttles))
            conn.execute("DELETE FROM events WHERE id = ?", (ev.id,))
        await self.db.run(move)
        self._ended(ev.id, finished=True)

    async def depth(self, function: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM events"
        args: tuple[str, ...] = ()
        if function is not None:
            sql, args = sql + " WHERE function = ?", (function,)
        row = await self.db.run(lambda c: c.execute(sql, args).fetchone())
        return int(row[0])

    async def summary(self) -> QueueSummary:
        def read(conn: sqlite3.Connection) -> QueueSummary:
            events = conn.execute("SELECT function, COUNT(*), MIN(created) FROM events "
                                  "GROUP BY function").fetchall()
            dead = conn.execute("SELECT function, COUNT(*) FROM dead_letters "
                                "GROUP BY function").fetchall()
            return QueueSummary({r[0]: int(r[1]) for r in events},
                                min((r[2] for r in events), default=None),
                                {r[0]: int(r[1]) for r in dead})
        return await self.db.run(read)

    # -- the dead-letter queue ----------------------------------------------------------------

    async def dead(self, function: str | None = None, limit: int = 100,
                   event_id: str | None = None) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[str | int] = []
        if function is not None:
            where.append("function = ?")
            args.append(function)
        if event_id is not None:
            where.append("id = ?")
            args.append(event_id)
        sql = "SELECT * FROM dead_letters"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY failed DESC LIMIT ?"
        args.append(limit)

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            out = []
            for r in conn.execute(sql, args):
                d = dict(r)
                d["payload"] = bytes(d["payload"]).decode("utf-8", "replace")
                d["chain"] = json.loads(d["chain"] or "[]")
                out.append(d)
            return out
        return await self.db.run(read)

    async def redrive(self, function: str, ids: list[str] | None = None) -> int:
        """Move dead letters back into the queue with a fresh attempt count."""
        now = time.time()

        def move(conn: sqlite3.Connection) -> int:
            sql = "SELECT * FROM dead_letters WHERE function = ?"
            args: list[Any] = [function]
            if ids:
                sql += f" AND id IN ({','.join('?' * len(ids))})"
                args += ids
            rows = conn.execute(sql, args).fetchall()
            for r in rows:
                conn.execute(f"INSERT INTO events({_COLS}) VALUES ({_MARKS}) "
                             f"ON CONFLICT(id) DO UPDATE SET {_EVENT_UPDATE}",
                             (r["id"], r["function"], r["qualifier"], r["payload"], r["trigger"],
                              0, now, now, r["chain"], r["target"], 0))
                conn.execute("DELETE FROM dead_letters WHERE id = ?", (r["id"],))
            return len(rows)
        n = await self.db.run(move)
        self.wakeup.set()
        return n

    async def purge(self, function: str, ids: list[str] | None = None) -> int:
        sql, args = "DELETE FROM dead_letters WHERE function = ?", [function]
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            args += ids
        return await self.db.run(lambda c: c.execute(sql, args).rowcount)
