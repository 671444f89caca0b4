"""The relational-state seam's contract, over SQLite (one node) and PostgreSQL (a cluster):
the stores' SQL means the same on both, transactions are all or nothing, two nodes writing the
same rows lose no update, and changes reach the other nodes (not the writer).

PostgreSQL is the machine's (tests/pg_helpers.py); each test gets a fresh database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from pg_helpers import BACKENDS, fresh_database, open_database

from dayfly.stores import pg
from dayfly.stores.db import Database, floor_sql, lock
from dayfly.stores.pg import PostgresDatabase

DDL = """
CREATE TABLE IF NOT EXISTS things (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,  -- a comment; with a semicolon
    size INTEGER NOT NULL DEFAULT 0,
    score REAL,
    data BLOB,
    note TEXT NOT NULL DEFAULT 'a;b'
);
CREATE INDEX IF NOT EXISTS things_by_size ON things(size);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[Database]:
    with open_database(backend, tmp_path) as d:
        d.ensure(DDL)
        yield d


@pytest.fixture
def nodes(backend: str, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """Two databases over the same data, as two nodes see it."""
    with ExitStack() as stack:
        if backend == "sqlite":
            a, b = Database(tmp_path / "one.db"), Database(tmp_path / "one.db")
        else:
            dsn = stack.enter_context(fresh_database())
            a, b = PostgresDatabase(dsn, node_id="a"), PostgresDatabase(dsn, node_id="b")
        stack.callback(a.close)
        stack.callback(b.close)
        a.ensure(DDL)
        b.ensure(DDL)
        yield a, b


def test_placeholders_literals_and_percent_signs(db: Database) -> None:
    row = db.call(lambda c: c.execute(
        "SELECT ? AS a, '?' AS b, 'x%y' AS c, 7 % ? AS d, ? || '-' || ? AS e",
        (1, 3, "p", "q")).fetchone())
    assert tuple(row) == (1, "?", "x%y", 1, "p-q")
    assert db.call(lambda c: c.execute("SELECT 7 % 4").fetchone()[0]) == 3  # no parameters
    db.call(lambda c: c.execute("INSERT INTO things(name, size) VALUES (:name, :size)",
                                {"name": "n", "size": 5}))
    assert db.call(lambda c: c.execute("SELECT size FROM things WHERE name = ?",
                                       ("n",)).fetchone()[0]) == 5


def test_bytes_and_numbers_round_trip(db: Database) -> None:
    data = bytes(range(256)) * 3
    db.call(lambda c: c.execute("INSERT INTO things(name, size, score, data) VALUES (?, ?, ?, ?)",
                                ("b", 2**40, 0.1, data)))
    db.call(lambda c: c.execute("INSERT INTO things(name, size, score) VALUES (?, ?, ?)",
                                ("t", True, None)))
    got = db.call(lambda c: c.execute("SELECT data, size, score FROM things WHERE name = 'b'")
                  .fetchone())
    assert (type(got[0]), got[0], got[1], got[2]) == (bytes, data, 2**40, 0.1)
    assert db.call(lambda c: c.execute("SELECT size FROM things WHERE name = 't'")
                   .fetchone()[0]) == 1  # a bool is stored as 1, as SQLite does
    total, count, mean = db.call(lambda c: c.execute(
        "SELECT SUM(size), COUNT(*), AVG(score) FROM things").fetchone())
    assert (total, type(total), count, mean) == (2**40 + 1, int, 2, 0.1)


def test_rows_act_like_sqlite_rows(db: Database) -> None:
    def run(c):
        c.executemany("INSERT INTO things(name, size) VALUES (?, ?)",
                      [("x", 1), ("y", 2), ("z", 3)])
        rows = c.execute("SELECT name, size FROM things ORDER BY name").fetchall()
        iterated = [tuple(r) for r in c.execute("SELECT name, size FROM things ORDER BY name")]
        updated = c.execute("UPDATE things SET size = size + 10 WHERE size >= ?", (2,)).rowcount
        deleted = c.execute("DELETE FROM things WHERE name = ?", ("none",)).rowcount
        return rows, iterated, updated, deleted
    rows, iterated, updated, deleted = db.call(run)
    first = rows[0]
    assert (first["name"], first[1], dict(first), list(first.keys())) == (
        "x", 1, {"name": "x", "size": 1}, ["name", "size"])
    assert iterated == [("x", 1), ("y", 2), ("z", 3)]
    assert (updated, deleted) == (2, 0)
    assert db.call(lambda c: c.execute("SELECT 1 FROM things WHERE name = 'none'")
                   .fetchone()) is None


def test_returning_upserts_and_autoincrement(db: Database) -> None:
    def run(c):
        seqs = [c.execute("INSERT INTO things(name) VALUES (?) RETURNING seq", (n,)).fetchone()[0]
                for n in ("a", "b")]
        ignored = c.execute("INSERT INTO things(name, size) VALUES ('a', 9) "
                            "ON CONFLICT(name) DO NOTHING").rowcount
        c.execute("INSERT INTO things(name, size) VALUES ('b', 7) "
                  "ON CONFLICT(name) DO UPDATE SET size = excluded.size")
        return seqs, ignored, c.execute("SELECT name, size FROM things ORDER BY seq").fetchall()
    seqs, ignored, rows = db.call(run)
    assert seqs[1] == seqs[0] + 1
    assert ignored == 0
    assert [tuple(r) for r in rows] == [("a", 0), ("b", 7)]


def test_text_sorts_by_code_point_as_s3_lists(db: Database) -> None:
    names = ["a", "B", "a/b", "a-b", "Z", "é", "中", "\U0001f600", "a b", "ab"]
    db.call(lambda c: c.executemany("INSERT INTO things(name) VALUES (?)", [(n,) for n in names]))
    got = db.call(lambda c: [r[0] for r in c.execute("SELECT name FROM things ORDER BY name")])
    assert got == sorted(names)
    assert db.call(lambda c: c.execute("SELECT COUNT(*) FROM things WHERE name >= ?",
                                       ("a",)).fetchone()[0]) == sorted(names)[::-1].index("a") + 1


def test_floor_is_a_floor_on_both_engines(db: Database) -> None:
    got = db.call(lambda c: [r[0] for r in c.execute(
        f"SELECT {floor_sql(c, '? / 1.0')} UNION ALL SELECT {floor_sql(c, '? / 1.0')}",
        (2.7, 3.0))])
    assert got == [2, 3]


def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    def run(c):
        c.execute("INSERT INTO things(name) VALUES ('kept?')")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        db.call(run)
    assert db.call(lambda c: c.execute("SELECT COUNT(*) FROM things").fetchone()[0]) == 0
    db.call(lambda c: c.execute("INSERT INTO things(name) VALUES ('next')"))  # usable again
    assert db.call(lambda c: c.execute("SELECT COUNT(*) FROM things").fetchone()[0]) == 1


async def test_run_is_call_on_the_event_loop(db: Database) -> None:
    await db.run(lambda c: c.execute("INSERT INTO things(name) VALUES ('r')"))
    assert await db.run(lambda c: c.execute("SELECT name FROM things").fetchone()[0]) == "r"


def test_two_nodes_lose_no_update(nodes: tuple[Database, Database]) -> None:
    """Increments, numbers taken with UPDATE ... RETURNING (the registry's next version) and a
    read-then-write under db.lock, from two nodes and two threads each."""
    a, b = nodes
    a.call(lambda c: c.executemany("INSERT INTO counters(name, n) VALUES (?, 0)",
                                   [("inc",), ("locked",)]))
    rounds = 40
    taken: list[int] = []

    def work(db: Database) -> None:
        for _ in range(rounds):
            db.call(lambda c: c.execute("UPDATE counters SET n = n + 1 WHERE name = 'inc'"))
            taken.append(db.call(lambda c: c.execute(
                "UPDATE counters SET n = n + 1 WHERE name = 'inc' RETURNING n").fetchone()[0]))

            def read_then_write(c):
                lock(c, "counters.locked")
                (n,) = c.execute("SELECT n FROM counters WHERE name = 'locked'").fetchone()
                c.execute("UPDATE counters SET n = ? WHERE name = 'locked'", (n + 1,))
            db.call(read_then_write)
    threads = [threading.Thread(target=work, args=(d,)) for d in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = dict(b.call(lambda c: [tuple(r) for r in c.execute("SELECT name, n FROM counters")]))
    assert counts == {"inc": 4 * rounds * 2, "locked": 4 * rounds}
    assert len(set(taken)) == len(taken) == 4 * rounds


def test_schema_creation_by_nodes_starting_together() -> None:
    """Three nodes against one empty database at once: every table is created once, no node
    fails (without the advisory lock, CREATE TABLE IF NOT EXISTS races on PostgreSQL)."""
    with fresh_database() as dsn:
        barrier = threading.Barrier(3)
        made: list[PostgresDatabase] = []
        errors: list[BaseException] = []

        def start() -> None:
            barrier.wait()
            try:
                made.append(PostgresDatabase(dsn))
            except BaseException as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=start) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for d in made:
            d.close()
        assert errors == []
        with psycopg.connect(dsn) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"functions", "versions", "invocations", "events", "secrets"} <= tables


def test_ddl_translation() -> None:
    stmt = pg.translate("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, r REAL, "
                        "b BLOB, s TEXT DEFAULT 'INTEGER; REAL', n INTEGER) WITHOUT ROWID")
    assert stmt == ('CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, '
                    'r DOUBLE PRECISION, b BYTEA, s TEXT COLLATE "C" DEFAULT \'INTEGER; REAL\', '
                    'n BIGINT)')
    assert pg.translate("SELECT a FROM t INDEXED BY i WHERE b = ? AND c LIKE '%?'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '%%?'")


async def test_serialization_failures_are_retried(tmp_path: Path) -> None:
    """PostgreSQL only: SQLite's write transactions never conflict (one at a time)."""
    with open_database("postgresql", tmp_path) as db:
        calls = []

        def flaky(c):
            calls.append(1)
            c.execute("SELECT 1")
            if len(calls) < 3:
                raise psycopg.errors.SerializationFailure("try again")
            return "done"
        assert await db.run(flaky) == "done"
        assert len(calls) == 3


async def test_changes_reach_the_other_node_not_the_writer(
        nodes: tuple[Database, Database], backend: str) -> None:
    a, b = nodes
    heard: dict[str, list[str | None]] = {"a": [], "b": [], "b-other": []}
    arrived = asyncio.Event()

    async def on_b(key: str | None) -> None:  # callbacks may be coroutines
        heard["b"].append(key)
        arrived.set()
    a.on_change("thing", heard["a"].append)
    b.on_change("thing", on_b)
    b.on_change("other", heard["b-other"].append)
    await a.start_listening()
    await b.start_listening()

    def write(c):
        c.execute("INSERT INTO things(name) VALUES ('x')")
        a.changed(c, "thing", "x")

    def rolled_back(c):
        a.changed(c, "thing", "never")
        raise RuntimeError("rolled back: no notice")
    with pytest.raises(RuntimeError):
        await a.run(rolled_back)
    await a.run(write)
    if backend == "sqlite":  # one node per file: nothing to tell
        assert heard == {"a": [], "b": [], "b-other": []}
        return
    await asyncio.wait_for(arrived.wait(), 10)
    assert heard == {"a": [], "b": ["x"], "b-other": []}
    await a.stop_listening()
    await b.stop_listening()


async def test_after_a_reconnect_every_callback_hears_none() -> None:
    """PostgreSQL only: SQLite has no LISTEN connection."""
    with fresh_database() as dsn:
        db = PostgresDatabase(dsn, node_id="n")
        heard: list[tuple[str, str | None]] = []
        both = asyncio.Event()

        def hear(topic: str):
            def callback(key: str | None) -> None:
                heard.append((topic, key))
                if len(heard) == 2:
                    both.set()
            return callback
        db.on_change("one", hear("one"))
        db.on_change("two", hear("two"))
        try:
            await db.start_listening()
            with psycopg.connect(dsn, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "datname = current_database() AND query LIKE 'LISTEN%'").fetchall()
            assert len(killed) == 1
            await asyncio.wait_for(both.wait(), 10)
            assert sorted(heard) == [("one", None), ("two", None)]
        finally:
            await db.stop_listening()
            db.close()


async def test_object_listing_pages_in_code_point_order(db: Database, tmp_path: Path) -> None:
    """ListObjects over the store: keys and common prefixes in S3's order on both engines."""
    from dayfly.stores.objects import ObjectStore

    async def body():
        yield b"x"
    store = ObjectStore(db, tmp_path, "eu-west-1")
    await store.create_bucket("bkt")
    keys = ["a", "B", "a/1", "a/2", "a-b", "Z", "é", "中/x", "\U0001f600", "a b", "ab", "_"]
    for k in keys:
        await store.put_object("bkt", k, body(), headers={})
    seen: list[str] = []
    start, inclusive = "", True
    while True:
        page = await store.list_objects("bkt", delimiter="/", start=start, inclusive=inclusive,
                                        max_keys=3)
        rows = [r["key"] for r in page.rows]
        assert rows == sorted(rows) and page.prefixes == sorted(page.prefixes)
        seen += sorted(rows + page.prefixes)
        if not page.truncated:
            break
        start, inclusive = page.next_start, page.next_inclusive
    expected = sorted({k.split("/")[0] + "/" if "/" in k else k for k in keys})
    assert seen == expected


def test_dashboard_aggregates_agree_on_both_engines(backend: str, tmp_path: Path) -> None:
    """stores/stats.py over records whose answers are known: counts, statuses, cold starts,
    nearest-rank percentiles and the time series' points (a point's number is a floor)."""
    from dayfly.stores import stats

    with open_database(backend, tmp_path) as db:
        since, step = 1000.0, 10.0
        rows = []
        for i in range(40):  # 4 points of 10 s, one record per second; every 4th is cold
            start = since + i + 0.75  # CAST rounds x.75 up: the point would be wrong
            status = "error" if i % 10 == 9 else "success"
            cold = i % 4 == 0
            rows.append((f"r{i}", "f", "$LATEST", "api", start, start, float(i + 1), status,
                         cold, 2.0 if cold else 0.0, 3.0 if cold else 0.0, 1, "", "", 128, "i"))
        db.call(lambda c: c.executemany(
            'INSERT INTO invocations (request_id, function, version, trigger, start, "end", '
            "duration_ms, status, cold, fork_ms, init_ms, max_rss_kb, output, init_output, "
            "memory_mb, instance_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows))
        over = db.call(lambda c: stats.overview(c, ["f", "g"], since, 40.0))
        assert over["f"] | {"per_min": None} == {
            "invocations": 40, "errors": 4, "cold": 10, "per_min": None, "error_rate": 0.1,
            "cold_share": 0.25, "p50_ms": 20.0, "p99_ms": 40.0, "last": since + 39.75}
        assert over["g"]["invocations"] == 0 and over["g"]["p50_ms"] is None
        page = db.call(lambda c: stats.function_stats(c, "f", since, 40.0, step))
        assert page["summary"]["by_status"] == {"success": 36, "error": 4}
        assert page["warm"] == {"count": 30, "p50_ms": 20.0, "p99_ms": 40.0}
        assert page["cold"] == {"count": 10, "p50_ms": 17.0, "p99_ms": 37.0}
        assert page["cold_start"] == {"fork_ms": 2.0, "init_ms": 3.0, "handler_ms": 19.0}
        assert [(p["invocations"], p["errors"], p["cold"], p["p50_ms"], p["p99_ms"])
                for p in page["series"]] == [(10, 1, 3, 5.0, 10.0), (10, 1, 2, 15.0, 20.0),
                                             (10, 1, 3, 25.0, 30.0), (10, 1, 2, 35.0, 40.0)]


def test_a_lost_connection_is_replaced() -> None:
    """The server ends every connection (a restart, an idle cut): the next call still works.
    PostgreSQL only: an embedded file has no connection to lose."""
    with fresh_database() as dsn:
        db = PostgresDatabase(dsn, connections=1)
        try:
            before = db.call(lambda c: c.execute("SELECT pg_backend_pid()").fetchone()[0])
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (before,))
            after = db.call(lambda c: c.execute("SELECT pg_backend_pid()").fetchone()[0])
            assert after != before
        finally:
            db.close()


def test_a_node_starting_against_a_busy_database_does_not_wait() -> None:
    """The schema exists and another node is mid-write: a node starting now neither waits for
    that write nor blocks the others (CREATE INDEX and ALTER TABLE lock a table even when they
    have nothing to do, so existing tables and columns are left alone). PostgreSQL only."""
    with fresh_database() as dsn:
        PostgresDatabase(dsn).close()
        with psycopg.connect(dsn) as writer:  # a transaction left open, holding its locks
            writer.execute("INSERT INTO secrets(name, value, updated) VALUES ('s', '', 0)")
            writer.execute("INSERT INTO invocations(request_id, function, version, trigger, "
                           'start, "end", duration_ms, status, cold, fork_ms, init_ms, '
                           "max_rss_kb, output, instance_id) "
                           "VALUES ('r', 'f', 'v', 't', 0, 0, 0, 's', 0, 0, 0, 0, '', 'i')")
            impatient = psycopg.conninfo.make_conninfo(dsn, options="-c lock_timeout=3000")
            PostgresDatabase(impatient).close()  # LockNotAvailable if it waited
            writer.rollback()
