"""PostgreSQL capture: a row trigger (SECURITY DEFINER, so every writer can use it) appends
to_jsonb images to a change log in the writer's transaction and NOTIFYs a channel at commit.

Sequence numbers are NOT the log's bigserial: concurrent transactions take ids in one order and
commit in another, so a reader could see id 11 before id 10 commits and skip it. Instead the
reader assigns `seq` itself, under an advisory lock, to the rows that are visible (committed)
and still unnumbered, in id order: seq order is then an order of visibility, and per-key order
holds because row locks make a second writer of a key take its id after the first committed.
See docs/decisions/0004-table-capture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from decimal import Decimal
from functools import partial
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from ...background import spawn
from .source import Change, Source, SourceError, TableURL

SEQUENCE_STEP = 10_000  # most rows numbered per read
Query = str | sql.SQL | sql.Composed


def _message(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresSource(Source):
    """One captured table; a worker connection for reads and one that LISTENs for wake-ups."""

    kind = "postgresql"

    def __init__(self, url: TableURL) -> None:
        super().__init__(url)
        self.schema, self.table = url.schema_table
        digest = hashlib.sha1(f"{self.schema}.{self.table}".encode()).hexdigest()
        base = self.table if len(self.table) <= 40 else f"{self.table[:31]}_{digest[:8]}"
        self.names = {"log": f"_dayfly_log_{base}", "capture": f"_dayfly_capture_{base}",
                      "read": f"_dayfly_read_{base}", "trigger": "_dayfly_capture"}
        self.channel = f"dayfly_{digest[:16]}"
        self.lock_key = int(digest[:15], 16)
        self.pk: list[str] = []
        self.bytea: set[str] = set()
        self._conn: psycopg.AsyncConnection | None = None
        self._listen: psycopg.AsyncConnection | None = None
        self._listener: asyncio.Task | None = None
        self._broken: str | None = None

    def _id(self, key: str) -> sql.Composable:
        return sql.Identifier(self.schema, self.names[key])

    @property
    def _where(self) -> str:
        return f"{self.url.masked.split('#')[0]} ({self.schema}.{self.table})"

    async def _connect(self) -> psycopg.AsyncConnection:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url.dsn, autocommit=True, connect_timeout=5, application_name="dayfly")
        except psycopg.Error as exc:
            raise SourceError(f"cannot connect to PostgreSQL at {self.url.masked.split('#')[0]}: "
                              f"{_message(exc)}") from None
        set_json_loads(partial(json.loads, parse_float=Decimal), conn)
        return conn

    async def _run(self, query: Query, params: tuple = ()) -> list[tuple]:
        if self._broken:
            raise SourceError(f"PostgreSQL {self._where}: {self._broken}")
        if self._conn is None:
            raise SourceError("the source is closed")
        try:
            cur = await self._conn.execute(query, params)
            return await cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise SourceError(f"PostgreSQL {self._where}: {_message(exc)}") from None

    # -- opening and describing ------------------------------------------------------------

    async def open(self) -> None:
        await self.close()
        self._broken = None
        self._conn = await self._connect()
        try:
            await self._describe()
            self._listen = await self._connect()
            await self._listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            await self.close()
            raise
        self._listener = spawn(self._listen_loop())

    async def _describe(self) -> None:
        if self.table.startswith("_dayfly_"):
            raise SourceError(f"'{self.table}' is one of dayfly's own tables")
        rows = await self._run("SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON "
                               "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                               (self.schema, self.table))
        if not rows:
            raise SourceError(f"no table {self.schema}.{self.table} in {self._where}")
        oid, kind = rows[0]
        if kind not in ("r", "p"):
            raise SourceError(f"{self.schema}.{self.table} is not a table (relkind {kind!r})")
        self.pk = [r[0] for r in await self._run(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
            "a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)", (oid,))]
        if not self.pk:
            raise SourceError(f"table {self.schema}.{self.table} has no primary key; dayfly builds "
                              "each record's Keys from it (add a PRIMARY KEY)")
        self.bytea = {r[0] for r in await self._run(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT "
            "attisdropped AND atttypid = 'bytea'::regtype", (oid,))}
        (trig, create, user), = await self._run(
            "SELECT has_table_privilege(%s, 'TRIGGER'), has_schema_privilege(%s, 'CREATE'), "
            "current_user", (oid, self.schema))
        missing = [what for ok, what in ((trig, f"TRIGGER on {self.schema}.{self.table}"),
                                         (create, f"CREATE on schema {self.schema}")) if not ok]
        if missing:
            raise SourceError(f"role {user} may not capture changes of {self.schema}.{self.table}: "
                              f"it lacks {' and '.join(missing)} (dayfly adds a trigger, a "
                              "function and a change-log table there)")

    async def _listen_loop(self) -> None:
        assert self._listen is not None
        try:
            async for _ in self._listen.notifies():
                self.changed.set()
        except psycopg.Error as exc:
            self._broken = f"lost the LISTEN connection: {_message(exc)}"
            self.changed.set()

    # -- capture install / removal ---------------------------------------------------------

    def _ddl(self) -> dict[str, sql.Composable]:
        log, table = self._id("log"), sql.Identifier(self.schema, self.table)
        capture = sql.SQL("""BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {log} (op, new) VALUES ('I', to_jsonb(NEW));
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO {log} (op, new, old) VALUES ('U', to_jsonb(NEW), to_jsonb(OLD));
  ELSE
    INSERT INTO {log} (op, old) VALUES ('D', to_jsonb(OLD));
  END IF;
  PERFORM pg_notify({channel}, '');
  RETURN NULL;
END""").format(log=log, channel=sql.Literal(self.channel))
        read = sql.SQL("""DECLARE base bigint;
BEGIN
  PERFORM pg_advisory_xact_lock({key});
  IF EXISTS (SELECT 1 FROM {log} l WHERE l.seq IS NULL) THEN
    SELECT coalesce(max(l.seq), 0) INTO base FROM {log} l;
    UPDATE {log} l SET seq = base + t.rn
      FROM (SELECT l2.id, row_number() OVER (ORDER BY l2.id) AS rn FROM {log} l2
            WHERE l2.seq IS NULL ORDER BY l2.id LIMIT {step}) t
      WHERE l.id = t.id;
  END IF;
  RETURN QUERY SELECT l.seq, l.op, l.ts, l.new, l.old FROM {log} l
    WHERE l.seq > after ORDER BY l.seq LIMIT n;
END""").format(log=log, key=sql.Literal(self.lock_key), step=sql.Literal(SEQUENCE_STEP))
        return {"capture": capture, "read": read, "table": table, "log": log}

    async def install(self) -> None:
        ddl = self._ddl()
        assert self._conn is not None
        body = {k: ddl[k].as_string(self._conn) for k in ("capture", "read")}
        have = await self._run(
            "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = "
            "p.pronamespace WHERE n.nspname = %s AND p.proname = ANY(%s)",
            (self.schema, [self.names["capture"], self.names["read"]]))
        trig = await self._run("SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND "
                               "tgname = %s", (ddl["table"].as_string(self._conn),
                                               self.names["trigger"]))
        if trig and dict(have) == {self.names[k]: body[k] for k in ("capture", "read")}:
            return
        log = ddl["log"]
        steps: list[Query] = [
            sql.SQL("SET LOCAL lock_timeout = '10s'"),
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, seq bigint, op text "
                    "NOT NULL, ts double precision NOT NULL DEFAULT "
                    "extract(epoch FROM clock_timestamp()), new jsonb, old jsonb)").format(log),
            sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (seq)").format(
                sql.Identifier(self.names["log"] + "_seq"), log),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (id) WHERE seq IS NULL").format(
                sql.Identifier(self.names["log"] + "_todo"), log),
            sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY "
                    "DEFINER SET search_path = pg_catalog, pg_temp AS {}").format(
                self._id("capture"), sql.Literal(body["capture"])),
            sql.SQL("CREATE OR REPLACE FUNCTION {}(after bigint, n integer) RETURNS TABLE(r_seq "
                    "bigint, r_op text, r_ts double precision, r_new jsonb, r_old jsonb) LANGUAGE "
                    "plpgsql SET search_path = pg_catalog, pg_temp AS {}").format(
                self._id("read"), sql.Literal(body["read"])),
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(self.names["trigger"]), ddl["table"]),
            sql.SQL("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW "
                    "EXECUTE FUNCTION {}()").format(sql.Identifier(self.names["trigger"]),
                                                    ddl["table"], self._id("capture")),
        ]
        await self._transaction(steps, "cannot install change capture on")

    async def _transaction(self, steps: list[Query], what: str) -> None:
        assert self._conn is not None
        try:
            async with self._conn.transaction():
                for step in steps:
                    await self._conn.execute(step)
        except psycopg.Error as exc:
            raise SourceError(f"{what} {self.schema}.{self.table}: {_message(exc)}") from None

    async def uninstall(self) -> None:
        ddl = self._ddl()
        steps: list[Query] = [sql.SQL("SET LOCAL lock_timeout = '10s'")]
        if await self._run("SELECT to_regclass(%s)", (ddl["table"].as_string(self._conn),)) != [
                (None,)]:
            steps.append(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(self.names["trigger"]), ddl["table"]))
        steps += [sql.SQL("DROP FUNCTION IF EXISTS {}()").format(self._id("capture")),
                  sql.SQL("DROP FUNCTION IF EXISTS {}(bigint, integer)").format(self._id("read")),
                  sql.SQL("DROP TABLE IF EXISTS {}").format(ddl["log"])]
        await self._transaction(steps, "cannot remove change capture from")

    # -- reading ---------------------------------------------------------------------------

    async def head(self) -> int:
        await self._run(sql.SQL("SELECT count(*) FROM {}(%s, 0)").format(self._id("read")),
                        (2**63 - 1,))
        rows = await self._run(sql.SQL("SELECT coalesce(max(seq), 0) FROM {}").format(
            self._id("log")))
        return int(rows[0][0])

    async def read(self, after: int, limit: int) -> list[Change]:
        self.changed.clear()
        rows = await self._run(sql.SQL("SELECT * FROM {}(%s, %s)").format(self._id("read")),
                               (after, limit))
        out = []
        for seq, op, ts, new, old in rows:
            new_row, old_row = self._row(new), self._row(old)
            keyed = new_row if new_row is not None else old_row or {}
            out.append(Change(seq, op, ts, {k: keyed.get(k) for k in self.pk}, new_row, old_row))
        return out

    def _row(self, data: dict[str, Any] | None) -> dict[str, Any] | None:
        if data is None:
            return None
        for col in self.bytea & data.keys():
            v = data[col]
            if isinstance(v, str) and v.startswith("\\x"):
                data[col] = bytes.fromhex(v[2:])
        return data

    async def prune(self, upto: int) -> None:
        log = self._id("log")
        await self._run(sql.SQL("DELETE FROM {} WHERE seq <= %s AND seq < (SELECT max(seq) "
                                "FROM {})").format(log, log), (upto,))

    async def wait(self, timeout: float) -> None:
        if self._broken:
            raise SourceError(f"PostgreSQL {self._where}: {self._broken}")
        await super().wait(timeout)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await self._listener
            self._listener = None
        for attr in ("_listen", "_conn"):
            conn = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()
