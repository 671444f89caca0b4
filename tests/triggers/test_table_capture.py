"""The capture contract, run over both backends (a real SQLite file, the real PostgreSQL
server): committed changes in order with typed images, rollbacks leave nothing, install and
removal leave the user's schema exactly as it was, bad sources fail clearly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from trigger_helpers import DB, scratch_db

from dayfly.triggers.tables.source import Source, SourceError, open_source, parse_table_url

SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path: Path) -> Iterator[DB]:
    with scratch_db(request.param, tmp_path) as d:
        yield d


async def opened(url: str) -> Source:
    source = open_source(parse_table_url(url))
    await source.open()
    await source.install()
    return source


async def test_committed_changes_arrive_in_order_with_typed_images(db: DB):
    t = db.create("orders")
    source = await opened(db.url(t))
    try:
        assert await source.head() == 0
        db.sql("INSERT INTO " + db.ns + t + " VALUES (1, 'pen', 1.5, ?, ?, ?)", True,
               b"\x00\xff", '{"tags": ["a", 2.5]}')
        db.sql(f"UPDATE {db.ns}{t} SET name = 'ink' WHERE id = 1")
        db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (2)")
        db.sql(f"DELETE FROM {db.ns}{t} WHERE id = 1")
        changes = await source.read(0, 100)
        assert [(c.op, c.keys) for c in changes] == [
            ("I", {"id": 1}), ("U", {"id": 1}), ("I", {"id": 2}), ("D", {"id": 1})]
        seqs = [c.seq for c in changes]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        ins, upd, _, dele = changes
        assert ins.old is None and dele.new is None
        assert ins.new == {"id": 1, "name": "pen", "price": Decimal("1.5"), "paid": True,
                           "data": b"\x00\xff", "meta": {"tags": ["a", Decimal("2.5")]}}
        assert upd.old["name"] == "pen" and upd.new["name"] == "ink"
        assert dele.old["name"] == "ink"
        assert await source.read(seqs[1], 100) == changes[2:]
        assert await source.head() == seqs[-1]
    finally:
        await source.close()


async def test_a_rolled_back_transaction_produces_nothing(db: DB):
    t = db.create("orders")
    source = await opened(db.url(t))
    try:
        db.sql("BEGIN")
        db.sql(f"INSERT INTO {db.ns}{t} (id, name) VALUES (1, 'ghost')")
        db.sql("ROLLBACK")
        db.sql(f"INSERT INTO {db.ns}{t} (id, name) VALUES (2, 'real')")
        changes = await source.read(0, 100)
        assert [c.keys for c in changes] == [{"id": 2}]
    finally:
        await source.close()


async def test_removing_the_capture_leaves_the_schema_as_it_was(db: DB):
    t = db.create("orders")
    db.sql(f"CREATE TABLE {db.ns}other (k TEXT PRIMARY KEY)")
    before = db.snapshot()
    source = await opened(db.url(t))
    await source.install()  # idempotent
    assert db.snapshot() != before
    db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (1)")
    await source.read(0, 10)
    await source.uninstall()
    await source.close()
    assert db.snapshot() == before
    db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (2)")  # the table still works without dayfly


async def test_pruning_keeps_sequence_numbers_increasing(db: DB):
    t = db.create("orders")
    source = await opened(db.url(t))
    try:
        for i in range(5):
            db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (?)", i)
        last = (await source.read(0, 100))[-1].seq
        await source.prune(last)
        assert [c.seq for c in await source.read(0, 100)] == [last]  # the newest is kept
        db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (99)")
        assert [c.seq for c in await source.read(last, 100)] == [last + 1]
    finally:
        await source.close()


async def test_a_commit_wakes_the_reader(db: DB):
    t = db.create("orders")
    source = await opened(db.url(t))
    try:
        assert await source.read(0, 10) == []
        waiter = asyncio.ensure_future(source.wait(5.0))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await asyncio.to_thread(db.sql, f"INSERT INTO {db.ns}{t} (id) VALUES (1)")
        await waiter
        assert time.monotonic() - start < 1.0
        assert len(await source.read(0, 10)) == 1
    finally:
        await source.close()


async def test_bad_sources_fail_with_the_reason(db: DB):
    db.create("nokey", "a TEXT, b TEXT")
    db.sql(f"CREATE VIEW {db.ns}v AS SELECT 1 AS x")
    for table, why in (("missing", "no table"), ("nokey", "has no primary key"),
                       ("v", "not a table" if db.kind == "postgresql" else "is a view")):
        source = open_source(parse_table_url(db.url(table)))
        with pytest.raises(SourceError, match=why):
            await source.open()
        await source.close()
    unreachable = ("sqlite:///nonexistent/dir/app.db#t" if db.kind == "sqlite"
                   else "postgresql://postgres@127.0.0.1:1/test#t")
    source = open_source(parse_table_url(unreachable))
    with pytest.raises(SourceError, match=r"no SQLite database|cannot connect"):
        await source.open()
    await source.close()
