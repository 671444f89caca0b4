"""The durable event queue (SQLite WAL): an event is on disk before it is acknowledged and
leaves only when it succeeded or was dead-lettered, so a crash at any moment loses nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from dataclasses import dataclass

from .db import Database


@dataclass(slots=True)
class Event:
    """One queued invocation; `id` doubles as its idempotency key across redeliveries."""

    id: str
    function: str
    qualifier: str | None
    payload: bytes
    trigger: str
    attempts: int
    not_before: float
    created: float


class EventQueue:
    """Events by due time; `in_flight` (event-loop only) stops double dispatch within a run."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.wakeup = asyncio.Event()
        self.in_flight: set[str] = set()

    async def put(self, function: str, qualifier: str | None, payload: bytes,
                  trigger: str = "event") -> str:
        now = time.time()
        ev_id = str(uuid.uuid4())
        await self.db.run(lambda c: c.execute(
            "INSERT INTO events(id, function, qualifier, payload, trigger, attempts, not_before, "
            "created) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            (ev_id, function, qualifier, payload, trigger, now, now)))
        self.wakeup.set()
        return ev_id

    async def due(self, limit: int) -> list[Event]:
        """Events whose time has come and that are not already being delivered."""
        now = time.time()
        skip = list(self.in_flight)

        def read(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute("SELECT * FROM events WHERE not_before <= ? ORDER BY not_before "
                                "LIMIT ?", (now, limit + len(skip))).fetchall()
            return [Event(**dict(r)) for r in rows if r["id"] not in skip][:limit]
        return await self.db.run(read)

    async def next_due(self) -> float | None:
        row = await self.db.run(lambda c: c.execute(
            "SELECT MIN(not_before) FROM events").fetchone())
        return row[0] if row and row[0] is not None else None

    async def ack(self, ev: Event) -> None:
        await self.db.run(lambda c: c.execute("DELETE FROM events WHERE id = ?", (ev.id,)))

    async def retry(self, ev: Event, delay_s: float, count_attempt: bool = True) -> None:
        ev.attempts += int(count_attempt)
        await self.db.run(lambda c: c.execute(
            "UPDATE events SET attempts = ?, not_before = ? WHERE id = ?",
            (ev.attempts, time.time() + delay_s, ev.id)))

    async def dead_letter(self, ev: Event, error: str) -> None:
        def move(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO dead_letters(id, function, qualifier, payload, "
                         "trigger, attempts, created, failed, error) VALUES (?,?,?,?,?,?,?,?,?)",
                         (ev.id, ev.function, ev.qualifier, ev.payload, ev.trigger,
                          ev.attempts + 1, ev.created, time.time(), error))
            conn.execute("DELETE FROM events WHERE id = ?", (ev.id,))
        await self.db.run(move)

    async def depth(self) -> int:
        row = await self.db.run(lambda c: c.execute("SELECT COUNT(*) FROM events").fetchone())
        return int(row[0])
