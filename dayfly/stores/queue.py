"""The durable event queue (SQLite WAL): an event is on disk before it is acknowledged and
leaves only when it succeeded or was dead-lettered, so a crash at any moment loses nothing.

An event either invokes a function (`target` None) or posts to a webhook (`target` a URL,
for destinations). `chain` lists the functions whose work caused it, oldest first, so
recursive loops can be stopped. Its `id` is its idempotency key across redeliveries.
`attempts` counts the tries that ran (or failed to start) its function; `throttles` the tries
refused for concurrency, which are no attempts (a dead letter keeps both).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .db import Database

_COLS = ("id, function, qualifier, payload, trigger, attempts, not_before, created, chain, target, "
         "throttles")
_MARKS = ",".join("?" * len(_COLS.split(", ")))


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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Event:
        d = dict(row)
        d["chain"] = json.loads(d["chain"] or "[]")
        return cls(**{k: d[k] for k in _COLS.split(", ")})

    def row(self) -> tuple[Any, ...]:
        return (self.id, self.function, self.qualifier, self.payload, self.trigger,
                self.attempts, self.not_before, self.created, json.dumps(self.chain), self.target,
                self.throttles)


class EventQueue:
    """Events by due time; `in_flight` (event-loop only) stops double dispatch within a run."""

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
            f"INSERT OR IGNORE INTO events({_COLS}) VALUES ({_MARKS})", ev.row()))
        self.fresh.append(ev)
        self.wakeup.set()
        return ev.id

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

    def _finished(self, ev_id: str) -> None:
        if len(self._done) == self._done.maxlen:
            self._done_set.discard(self._done[0])
        self._done.append(ev_id)
        self._done_set.add(ev_id)

    async def ack(self, ev: Event) -> None:
        await self.db.run(lambda c: c.execute("DELETE FROM events WHERE id = ?", (ev.id,)))
        self._finished(ev.id)

    async def retry(self, ev: Event, delay_s: float) -> None:
        """Due again after `delay_s`, with its counts as the caller left them."""
        await self.db.run(lambda c: c.execute(
            "UPDATE events SET attempts = ?, throttles = ?, not_before = ? WHERE id = ?",
            (ev.attempts, ev.throttles, time.time() + delay_s, ev.id)))

    async def dead_letter(self, ev: Event, error: str) -> None:
        def move(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO dead_letters(id, function, qualifier, payload, "
                         "trigger, attempts, created, failed, error, chain, target, throttles) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                         (ev.id, ev.function, ev.qualifier, ev.payload, ev.trigger,
                          ev.attempts, ev.created, time.time(), error,
                          json.dumps(ev.chain), ev.target, ev.throttles))
            conn.execute("DELETE FROM events WHERE id = ?", (ev.id,))
        await self.db.run(move)
        self._finished(ev.id)

    async def depth(self, function: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM events"
        args: tuple[str, ...] = ()
        if function is not None:
            sql, args = sql + " WHERE function = ?", (function,)
        row = await self.db.run(lambda c: c.execute(sql, args).fetchone())
        return int(row[0])

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
                conn.execute(f"INSERT OR REPLACE INTO events({_COLS}) VALUES ({_MARKS})",
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
