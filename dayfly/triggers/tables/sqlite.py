"""SQLite capture: AFTER INSERT/UPDATE/DELETE triggers append JSON images (json_object) to a
change-log table inside the writer's own transaction, so a rollback leaves no trace.

SQLite has one writer at a time, so the log's rowid order is commit order. Wake-ups come from a
thread polling `PRAGMA data_version` (it changes when another connection commits) every few
milliseconds; it reads no table, so polling costs next to nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

from .source import Change, Source, SourceError, TableURL

T = TypeVar("T")
POLL_S = 0.002
CHUNK = 60  # columns per json_object call (SQLite allows 127 arguments per function)
OPS = (("ins", "INSERT", "'I'", "NEW", None), ("upd", "UPDATE", "'U'", "NEW", "OLD"),
       ("del", "DELETE", "'D'", None, "OLD"))
TS = "(julianday('now') - 2440587.5) * 86400.0"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class SqliteSource(Source):
    """One captured table in one SQLite file; all calls run on a private thread."""

    kind = "sqlite"

    def __init__(self, url: TableURL) -> None:
        super().__init__(url)
        self.path = url.dsn
        self.table = url.table
        self.log_table = f"_dayfly_log_{url.table}"
        self.columns: dict[str, str] = {}  # name -> declared type, in table order
        self.pk: list[str] = []
        self._conn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._inode: tuple[int, int] | None = None
        self._checked = 0.0

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise SourceError("the source is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as exc:
            raise SourceError(f"SQLite {self.path}: {exc}") from None

    def _uri(self, mode: str) -> str:
        return f"file:{quote(self.path)}?mode={mode}"

    # -- opening and describing ------------------------------------------------------------

    async def open(self) -> None:
        await self.close()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dayfly-sqlite")
        await self._call(self._open)
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch,
                                         args=(asyncio.get_running_loop(), self._stop),
                                         name="dayfly-sqlite-watch", daemon=True)
        self._watcher.start()

    def _open(self) -> None:
        if self.table.startswith("_dayfly_"):
            raise SourceError(f"'{self.table}' is one of dayfly's own tables")
        if not os.path.isfile(self.path):
            raise SourceError(f"no SQLite database at {self.path}")
        conn = sqlite3.connect(self._uri("rw"), uri=True, isolation_level=None,
                               check_same_thread=False, timeout=5)
        try:
            conn.execute("PRAGMA schema_version")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise SourceError(f"{self.path} is not a SQLite database ({exc})") from None
        self._conn = conn
        self._inode = _inode(self.path)
        self._checked = time.monotonic()
        self._describe(conn)

    def _describe(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') "
                           "AND name = ? COLLATE NOCASE", (self.table,)).fetchone()
        if row is None:
            raise SourceError(f"no table '{self.table}' in {self.path}")
        if row[0] != "table":
            raise SourceError(f"'{self.table}' in {self.path} is a view; only tables can be "
                              "captured")
        info = conn.execute(f"PRAGMA table_info({_ident(self.table)})").fetchall()
        self.columns = {r[1]: (r[2] or "") for r in info}
        self.pk = [r[1] for r in sorted((r for r in info if r[5] > 0), key=lambda r: r[5])]
        if not self.pk:
            raise SourceError(f"table '{self.table}' in {self.path} has no primary key; dayfly "
                              "builds each record's Keys from it (declare a PRIMARY KEY)")

    # -- capture install / removal ---------------------------------------------------------

    def _image(self, ref: str) -> str:
        cols = list(self.columns)
        objects = []
        for i in range(0, len(cols), CHUNK):
            args = []
            for c in cols[i:i + CHUNK]:
                v = f"{ref}.{_ident(c)}"
                args.append(f"{_literal(c)}, CASE typeof({v}) WHEN 'blob' THEN "
                            f"json_object('$b', hex({v})) ELSE {v} END")
            objects.append(f"json_object({', '.join(args)})")
        return f"json_array({', '.join(objects)})"

    def _trigger_sql(self) -> dict[str, str]:
        out = {}
        for suffix, event, op, new, old in OPS:
            name = f"_dayfly_{self.table}_{suffix}"
            new_sql = self._image(new) if new else "NULL"
            old_sql = self._image(old) if old else "NULL"
            out[name] = (f"CREATE TRIGGER {_ident(name)} AFTER {event} ON {_ident(self.table)} "
                         f"BEGIN INSERT INTO {_ident(self.log_table)} (op, ts, new, old) VALUES "
                         f"({op}, {TS}, {new_sql}, {old_sql}); END")
        return out

    async def install(self) -> None:
        await self._call(self._install)

    def _install(self) -> None:
        conn = self._conn
        assert conn is not None
        wanted = self._trigger_sql()
        have = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND "
                                 "tbl_name = ? COLLATE NOCASE", (self.table,)).fetchall())
        log_exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (self.log_table,)).fetchone()
        if log_exists and all(have.get(n) == sql for n, sql in wanted.items()):
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_ident(self.log_table)} (seq INTEGER "
                         "PRIMARY KEY, op TEXT NOT NULL, ts REAL NOT NULL, new TEXT, old TEXT)")
            for name, sql in wanted.items():
                conn.execute(f"DROP TRIGGER IF EXISTS {_ident(name)}")
                conn.execute(sql)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SourceError(f"cannot install change capture on '{self.table}' in {self.path}: "
                              f"{exc} (dayfly needs write access to add triggers and its change "
                              "log)") from None

    async def uninstall(self) -> None:
        await self._call(self._uninstall)

    def _uninstall(self) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name in self._trigger_sql():
                conn.execute(f"DROP TRIGGER IF EXISTS {_ident(name)}")
            conn.execute(f"DROP TABLE IF EXISTS {_ident(self.log_table)}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------

    async def head(self) -> int:
        return await self._call(lambda: self._one(
            f"SELECT coalesce(max(seq), 0) FROM {_ident(self.log_table)}"))

    def _one(self, sql: str, *args: Any) -> Any:
        assert self._conn is not None
        return self._conn.execute(sql, args).fetchone()[0]

    async def read(self, after: int, limit: int) -> list[Change]:
        self.changed.clear()
        return await self._call(self._read, after, limit)

    def _read(self, after: int, limit: int) -> list[Change]:
        assert self._conn is not None
        if time.monotonic() - self._checked > 1.0:  # an open file outlives its unlinking
            self._checked = time.monotonic()
            if _inode(self.path) != self._inode:
                raise SourceError(f"the SQLite database {self.path} was removed or replaced")
        rows = self._conn.execute(
            f"SELECT seq, op, ts, new, old FROM {_ident(self.log_table)} WHERE seq > ? "
            "ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        out = []
        for seq, op, ts, new, old in rows:
            new_row, old_row = self._row(new), self._row(old)
            keyed = new_row if new_row is not None else old_row or {}
            out.append(Change(seq, op, ts, {k: keyed.get(k) for k in self.pk}, new_row, old_row))
        return out

    def _row(self, text: str | None) -> dict[str, Any] | None:
        if text is None:
            return None
        row: dict[str, Any] = {}
        for part in json.loads(text, parse_float=Decimal):
            row.update(part)
        return {c: _decode(v, self.columns.get(c, "")) for c, v in row.items()}

    async def prune(self, upto: int) -> None:
        await self._call(lambda: self._conn.execute(  # type: ignore[union-attr]
            f"DELETE FROM {_ident(self.log_table)} WHERE seq <= ? AND seq < "
            f"(SELECT max(seq) FROM {_ident(self.log_table)})", (upto,)))

    def _watch(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """Poll data_version on a connection of its own; wake the consumer when it moves."""
        try:
            conn = sqlite3.connect(self._uri("ro"), uri=True, check_same_thread=False)
        except sqlite3.Error:
            return
        last = None
        while not stop.wait(POLL_S):
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                version = None
                stop.wait(0.5)
            if version != last or version is None:
                last = version
                try:
                    loop.call_soon_threadsafe(self.changed.set)
                except RuntimeError:  # the event loop is gone
                    break
        conn.close()

    async def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.join)
            self._watcher = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(pool, conn.close)
            pool.shutdown(wait=False)


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _decode(v: Any, decltype: str) -> Any:
    """A JSON image value back to Python, using the column's declared type for hints."""
    if isinstance(v, dict) and len(v) == 1 and "$b" in v:
        return bytes.fromhex(v["$b"])
    t = decltype.upper()
    if "BOOL" in t and isinstance(v, int) and v in (0, 1):
        return bool(v)
    if "JSON" in t and isinstance(v, str):
        try:
            parsed = json.loads(v, parse_float=Decimal)
        except ValueError:
            return v
        return parsed if isinstance(parsed, dict | list) else v
    return v
