"""Leases: work that must run on one node at a time (a schedule runner, a table's change
stream) runs only while its lease is held here.

    InProcessLeases   one node: every lease is granted at once
    PostgresLeases    a cluster: session advisory locks on one dedicated connection per node

What the wrapper (`Leases`) guarantees, whatever the backend:
 1. `start` runs when the lease is acquired, `stop` when it is lost or released; never two
    transitions of one lease at once, and `stop` only after its `start` returned.
 2. A `start` that fails gives the lease back (another node, or the next round, tries again).
 3. `release` of a lease held here returns after its `stop` and after the lock is given back.
Work must re-read its position (a checkpoint, a last fire time) in `start`: the lease may have
been held elsewhere since.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psycopg

from ..background import spawn

log = logging.getLogger("dayfly.cluster.leases")

Callback = Callable[[], Awaitable[None]]
RETRY_S = 1.0  # how often a node tries the leases it does not hold (and checks its connection)
CHECK_TIMEOUT_S = 2.0  # a lease round the database does not answer within: the leases are lost


@dataclass(slots=True, eq=False)
class Lease:
    """One named lease and the work it guards; `held` is guarded by `lock`."""

    name: str
    start: Callback
    stop: Callback
    held: bool = False
    tried: bool = False  # an acquisition was attempted (and, if not held, refused)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Leases(abc.ABC):
    """The seam; backends implement `_grant` (try a lease) and `_give_back`."""

    # the longest a lease stays unheld after its holder died: work that is late by no more
    # than this (a schedule's fire) is not "missed" but taken over
    handover_s = 0.0

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}

    async def start(self) -> None:  # noqa: B027 (a backend with nothing to start keeps it)
        """Begin acquiring (the leases registered before this, too)."""

    async def hold(self, name: str, start: Callback, stop: Callback) -> None:
        """Run `start` whenever this node acquires `name`, `stop` when it loses it (a name
        already held keeps its callbacks). Returns once the first attempt is made (in-process:
        once `start` returned)."""
        if name not in self.leases:
            self.leases[name] = Lease(name, start, stop)
            await self._first_try(self.leases[name])

    async def _first_try(self, lease: Lease) -> None:
        await self._acquire(lease)

    def held(self, name: str) -> bool:
        lease = self.leases.get(name)
        return bool(lease and lease.held)

    def waiting(self, name: str) -> bool:
        """Registered, tried, and held by another node."""
        lease = self.leases.get(name)
        return bool(lease and lease.tried and not lease.held)

    async def release(self, name: str) -> None:
        """Stop the work (if it runs here) and let another node have the lease."""
        lease = self.leases.pop(name, None)
        if lease is not None:
            async with lease.lock:
                await self._stop(lease, give_back=True)

    async def close(self) -> None:
        for name in list(self.leases):
            await self.release(name)

    # -- for backends ------------------------------------------------------------------------

    @abc.abstractmethod
    async def _grant(self, lease: Lease) -> bool:
        """Try to take the lease for this node; True if it is now held here."""

    @abc.abstractmethod
    async def _give_back(self, lease: Lease) -> None:
        """Let another node have the lease."""

    async def _acquire(self, lease: Lease) -> None:
        async with lease.lock:
            if lease.held or self.leases.get(lease.name) is not lease:
                return
            try:
                granted = await self._grant(lease)
            except Exception as exc:  # the connection broke: the next round reconnects
                log.debug("lease %s not tried: %s", lease.name, exc)
                return
            lease.tried = True
            if not granted:
                return
            lease.held = True
            log.info("lease %s acquired", lease.name)
            try:
                await lease.start()
            except Exception:
                log.exception("lease %s: starting its work failed; giving it back", lease.name)
                await self._stop(lease, give_back=True)

    async def _stop(self, lease: Lease, *, give_back: bool) -> None:
        """Stop the lease's work if it runs; `give_back`: the lock is still ours to release."""
        if not lease.held:
            return
        lease.held = False
        try:
            await lease.stop()
        except Exception:
            log.exception("lease %s: stopping its work failed", lease.name)
        if give_back:
            with contextlib.suppress(Exception):
                await self._give_back(lease)
        log.info("lease %s %s", lease.name, "released" if give_back else "lost")


class InProcessLeases(Leases):
    """One node: a lease is granted as soon as it is asked for."""

    async def _grant(self, lease: Lease) -> bool:
        return True

    async def _give_back(self, lease: Lease) -> None:
        return None


def lock_key(cluster: str, name: str) -> int:
    """The advisory lock (a signed 64-bit key) of lease `name` in cluster `cluster`."""
    digest = hashlib.sha256(f"dayfly lease\0{cluster}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLeases(Leases):
    """Session advisory locks on one connection of this node: if that connection drops (the
    node died, or lost the database), PostgreSQL releases every lock of it at once, and this
    node stops all the work they guarded. Unheld leases are retried every RETRY_S, so a dead
    node's work resumes on another within a few seconds."""

    handover_s = 15.0

    def __init__(self, dsn: str, cluster: str) -> None:
        super().__init__()
        self.dsn = dsn
        self.cluster = cluster
        self.conn: psycopg.AsyncConnection | None = None  # used by the loop task only
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    async def start(self) -> None:
        self._task = spawn(self._loop())

    async def _first_try(self, lease: Lease) -> None:
        if self.conn is None:  # not connected (yet): the loop tries it
            self._kick.set()
        else:
            spawn(self._acquire(lease))

    def key(self, name: str) -> int:
        return lock_key(self.cluster, name)

    async def _loop(self) -> None:
        while not self._closing:
            self._kick.clear()
            try:
                await asyncio.wait_for(self._round(), CHECK_TIMEOUT_S + RETRY_S)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                await self._lose_all(f"{type(exc).__name__}: {exc}".strip())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), RETRY_S)

    async def _round(self) -> None:
        """Check the connection (reconnecting if needed) and try every lease not held."""
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=int(CHECK_TIMEOUT_S) + 1,
                keepalives=1, keepalives_idle=5, keepalives_interval=1, keepalives_count=3,
                application_name="dayfly leases")
        await asyncio.wait_for(self.conn.execute("SELECT 1"), CHECK_TIMEOUT_S)
        for lease in list(self.leases.values()):
            if not lease.held and not lease.lock.locked():
                spawn(self._acquire(lease))  # its start may take a while: not in this round

    async def _grant(self, lease: Lease) -> bool:
        if self.conn is None or self.conn.closed:
            return False
        cur = await asyncio.wait_for(self.conn.execute(
            "SELECT pg_try_advisory_lock(%s)", (self.key(lease.name),)), CHECK_TIMEOUT_S)
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _give_back(self, lease: Lease) -> None:
        if self.conn is not None and not self.conn.closed:
            await asyncio.wait_for(self.conn.execute(
                "SELECT pg_advisory_unlock(%s)", (self.key(lease.name),)), CHECK_TIMEOUT_S)

    async def _lose_all(self, why: str) -> None:
        """The connection is gone or mute: its locks are (or will be) released by the server;
        stop everything they guarded before another node starts it."""
        held = [lease for lease in self.leases.values() if lease.held]
        if held or self.conn is not None:
            log.warning("leases: lost the database connection (%s); stopping %d lease(s)' work",
                        why, len(held))
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)
        for lease in held:
            async with lease.lock:
                await self._stop(lease, give_back=False)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await super().close()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
            self.conn = None
