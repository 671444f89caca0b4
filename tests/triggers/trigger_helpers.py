"""Helpers for trigger tests: deploy a recording function, read what it received, talk to the
test PostgreSQL server. Not a conftest.py (see tests/e2e/e2e_helpers.py for why).

Recording functions use `isolation = "process"`: their handler appends what it received to a
file on the host, which the linux tier's read-only sandbox could not do.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_zip

PG_DSNS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")

RECORDER = """
import json, os, time

OUT = os.environ["OUT"]


def handler(event, context):
    start = time.time()
    with open(OUT, "a") as f:
        f.write(json.dumps({"t": start, "rid": context.aws_request_id,
                            "key": context.idempotency_key, "event": event}) + "\\n")
    return behave(event)


def behave(event):
    return {"ok": True}
"""


def unique(hint: str = "fn") -> str:
    return f"{hint}-{uuid.uuid4().hex[:8]}"


def deploy(server, name: str, out: Path, behave: str = "", timeout: int = 10,
           extra_env: dict[str, str] | None = None) -> None:
    """Deploy a recorder that appends every event to `out`; `behave` may redefine behave()."""
    env = {"OUT": str(out), **(extra_env or {})}
    toml = (f'handler = "handler.handler"\nisolation = "process"\ntimeout = {timeout}\n'
            "[env]\n" + "".join(f'{k} = "{v}"\n' for k, v in env.items()))
    code = textwrap.dedent(RECORDER) + "\n" + textwrap.dedent(behave)
    r = httpx.post(f"{server.url}/dayfly/v1/functions/{name}/deploy",
                   content=make_zip({"handler.py": code, "dayfly.toml": toml}),
                   headers={"content-type": "application/zip"}, timeout=120)
    assert r.status_code == 200, r.text
    last = json.loads(r.text.strip().splitlines()[-1])
    assert "function" in last, last


def received(out: Path) -> list[dict[str, Any]]:
    """Every invocation the recorder saw, oldest first."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def records(out: Path) -> list[dict[str, Any]]:
    """Every stream record delivered, in delivery order."""
    return [r for inv in received(out) for r in inv["event"].get("Records", [])]


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def pg_dsn() -> str:
    """A DSN of the test PostgreSQL server, or skip (strict CI turns the skip into a failure)."""
    psycopg = pytest.importorskip("psycopg")
    errors = []
    for dsn in PG_DSNS:
        try:
            with psycopg.connect(dsn, connect_timeout=3):
                return dsn
        except psycopg.Error as exc:
            errors.append(f"{dsn}: {exc}")
    pytest.skip("PostgreSQL is not reachable: " + "; ".join(errors))


def create_mapping(lam, function: str, source: str, **kw: Any) -> dict:
    params = {"FunctionName": function, "EventSourceArn": source,
              "StartingPosition": "LATEST", **kw}
    return lam.create_event_source_mapping(**params)


COLUMNS = {
    "sqlite": "id INTEGER PRIMARY KEY, name TEXT, price REAL, paid BOOLEAN, data BLOB, meta JSON",
    "postgresql": "id integer PRIMARY KEY, name text, price numeric, paid boolean, data bytea, "
                  "meta jsonb",
}


@dataclass
class DB:
    """One backend with a scratch namespace: run SQL, snapshot the schema, build URLs."""

    kind: str
    base: str  # URL without the table
    ns: str  # "" (sqlite) or "schema."
    conn: Any

    def sql(self, text: str, *params: Any) -> list[tuple]:
        if self.kind == "postgresql":
            text = text.replace("?", "%s")
        cur = self.conn.execute(text, params)
        return cur.fetchall() if cur.description else []

    def url(self, table: str) -> str:
        return f"{self.base}#{self.ns}{table}"

    def create(self, table: str, columns: str | None = None) -> str:
        self.sql(f"CREATE TABLE {self.ns}{table} ({columns or COLUMNS[self.kind]})")
        return table

    def snapshot(self) -> list[tuple]:
        if self.kind == "sqlite":
            return self.sql("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
        schema = self.ns.rstrip(".")
        return (self.sql("SELECT table_name, table_type FROM information_schema.tables WHERE "
                         "table_schema = ? ORDER BY 1", schema)
                + self.sql("SELECT routine_name FROM information_schema.routines WHERE "
                           "routine_schema = ? ORDER BY 1", schema)
                + self.sql("SELECT trigger_name, event_object_table FROM "
                           "information_schema.triggers WHERE trigger_schema = ? ORDER BY 1",
                           schema)
                + self.sql("SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON "
                           "n.oid = c.relnamespace WHERE n.nspname = ? ORDER BY 1", schema))


@contextmanager
def scratch_db(kind: str, tmp_path: Path) -> Iterator[DB]:
    """A SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        path = tmp_path / f"app-{uuid.uuid4().hex[:6]}.db"
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            yield DB("sqlite", f"sqlite://{path}", "", conn)
        finally:
            conn.close()
        return
    import psycopg

    dsn = pg_dsn()
    schema = f"dft_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield DB("postgresql", dsn, f"{schema}.", conn)
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()
