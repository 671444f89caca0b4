"""The relational-state seam: `Database` (the embedded SQLite file, WAL; one thread, off the
event loop) and its cluster twin `stores.pg.PostgresDatabase` (same API, same SQL).

Stores write one dialect, accepted by both engines: `?` placeholders, `ON CONFLICT ... DO
UPDATE/NOTHING` (never `INSERT OR REPLACE/IGNORE`), `RETURNING` (never `lastrowid`), no PRAGMA
or sqlite_master outside this module, no SQLite-only functions. DDL is written in SQLite's
words (`INTEGER`, `REAL`, `BLOB`, `AUTOINCREMENT`) and translated for PostgreSQL in one place
(stores/pg.py). Stores that mirror the database in memory announce their writes with
`changed()` and reload on `on_change()`: a no-op here, where this node is the only writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
# What a change callback receives: the key that changed, or None for "reload everything".
ChangeCallback = Callable[[str | None], Awaitable[None] | None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    reserved INTEGER,
    next_version INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    config TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    alias TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    trigger TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,  -- quoted: a reserved word in PostgreSQL
    duration_ms REAL NOT NULL,
    status TEXT NOT NULL,
    cold INTEGER NOT NULL,
    fork_ms REAL NOT NULL,
    init_ms REAL NOT NULL,
    max_rss_kb INTEGER NOT NULL,
    error TEXT,
    output TEXT NOT NULL,
    init_output TEXT NOT NULL DEFAULT '',
    memory_mb INTEGER NOT NULL DEFAULT 128,
    instance_id TEXT NOT NULL,
    trace_id TEXT,
    event TEXT,
    result TEXT,
    node TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS invocations_by_function ON invocations(function, start);
-- covers the dashboard's aggregates (stores/stats.py): they never read the rows themselves
CREATE INDEX IF NOT EXISTS invocations_stats ON invocations(function, start, duration_ms, status,
                                                          cold, fork_ms, init_ms);
CREATE INDEX IF NOT EXISTS invocations_by_request ON invocations(request_id);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,  -- '' once sealed; plain text only in rows of older versions
    updated REAL NOT NULL,
    sealed BLOB  -- the value, sealed (control/secret_box.py)
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    qualifier TEXT,
    payload BLOB NOT NULL,
    trigger TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL,
    created REAL NOT NULL,
    chain TEXT NOT NULL DEFAULT '[]',
    target TEXT,
    throttles INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_due ON events(not_before);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    qualifier TEXT,
    payload BLOB NOT NULL,
    trigger TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created REAL NOT NULL,
    failed REAL NOT NULL,
    error TEXT NOT NULL,
    chain TEXT NOT NULL DEFAULT '[]',
    target TEXT,
    throttles INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dead_letters_by_function ON dead_letters(function, failed);
CREATE TABLE IF NOT EXISTS event_configs (
    name TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (name, qualifier)
);
"""


# Columns added after a table first shipped: (table, column, declaration).
ADDED_COLUMNS = [
    ("events", "chain", "TEXT NOT NULL DEFAULT '[]'"),
    ("events", "target", "TEXT"),
    ("dead_letters", "chain", "TEXT NOT NULL DEFAULT '[]'"),
    ("dead_letters", "target", "TEXT"),
    ("events", "throttles", "INTEGER NOT NULL DEFAULT 0"),
    ("dead_letters", "throttles", "INTEGER NOT NULL DEFAULT 0"),
    ("invocations", "trace_id", "TEXT"),
    ("invocations", "event", "TEXT"),
    ("invocations", "result", "TEXT"),
    ("invocations", "node", "TEXT NOT NULL DEFAULT ''"),
    ("secrets", "sealed", "BLOB"),
    ("access_keys", "owner", "TEXT NOT NULL DEFAULT 'dayfly'"),  # the user a key belongs to
]


# Tables of disposable data (invocation records) that are rebuilt when their shape changed.
REBUILT_WITHOUT = [("invocations", "output")]


def _migrate(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    """Bring an older data directory's tables up to date; return the columns added."""
    added = set()
    for table, column in REBUILT_WITHOUT:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if have and column not in have:
            conn.execute(f"DROP TABLE {table}")
    for table, column, decl in ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if have and column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            added.add((table, column))
    return added


def floor_sql(conn: sqlite3.Connection, expr: str) -> str:
    """SQL for `expr` (a number >= 0) rounded down to an integer, in `conn`'s engine: SQLite's
    CAST truncates, PostgreSQL's rounds (its connections bring their own `floor_sql`)."""
    own = getattr(conn, "floor_sql", None)
    return own(expr) if own is not None else f"CAST({expr} AS INTEGER)"


def lock(conn: sqlite3.Connection, name: str) -> None:
    """Serialise, across nodes, the transactions that take the lock `name` (until each ends):
    for a read then write that one statement cannot do. SQLite: nothing to do, its write
    transactions already run one at a time (BEGIN IMMEDIATE)."""
    own = getattr(conn, "lock", None)
    if own is not None:
        own(name)


def _private_files(path: Path) -> None:
    """The database and its WAL and shared-memory files are the owner's only (0600), also
    those an older version left readable. SQLite gives the -wal and -shm files it creates the
    mode of the database file, so creating that one 0600 first covers them."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(p, 0o600)


class Database:
    """One connection, one thread: calls are serialised, so no lock is needed around it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dayfly-db")
        self._conn: sqlite3.Connection | None = None
        self.added: set[tuple[str, str]] = set()  # columns this start added (an upgrade)
        self._pool.submit(self._open).result()

    def _open(self) -> None:
        _private_files(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        self.added = _migrate(conn)
        conn.executescript(SCHEMA)
        conn.row_factory = sqlite3.Row
        self._conn = conn

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the database thread and wait (for use outside the event loop)."""
        return self._pool.submit(self._tx, fn).result()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in one transaction on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._tx, fn)

    def ensure(self, ddl: str) -> None:
        """Create tables and indexes (`CREATE ... IF NOT EXISTS` statements, SQLite's words)."""
        def run() -> None:
            assert self._conn is not None
            self._conn.executescript(ddl)
        self._pool.submit(run).result()

    def changed(self, conn: sqlite3.Connection, topic: str, key: str) -> None:
        """Announce, inside a write transaction, that `key` of `topic` changed (to the other
        nodes, at commit). No-op: a SQLite file has one node."""

    def on_change(self, topic: str, callback: ChangeCallback) -> None:
        """Call `callback(key)` on the event loop when another node changed `key` of `topic`,
        `callback(None)` when changes may have been missed. Never called here: no other node."""

    async def start_listening(self) -> None:
        """Start delivering other nodes' changes to the `on_change` callbacks (no-op here)."""

    async def stop_listening(self) -> None:
        """Stop delivering changes (before `close()`, on the event loop; no-op here)."""

    def compact(self) -> None:
        """Rebuild the file (VACUUM: no free page or cell keeps deleted bytes), copy the WAL
        into it and truncate the WAL to nothing. Blocks every other call while it runs."""
        def run() -> None:
            assert self._conn is not None
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._pool.submit(run).result()

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._pool.submit(_close).result()
        self._pool.shutdown()
