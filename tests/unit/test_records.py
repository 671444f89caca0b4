"""Invocation records: written in batches, queryable, bounded by count and age."""

import time

import pytest
from pg_helpers import BACKENDS, open_database

from dayfly.stores.records import RecordStore, lambda_log_text
from dayfly.types import FunctionSpec, InvokeRequest, InvokeResult

SPEC = FunctionSpec(name="f", version="$LATEST", revision="r", arn="a", handler="h.h",
                    code_dir="/x")


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    """Each test runs over SQLite and over PostgreSQL."""
    with open_database(request.param, tmp_path) as d:
        yield d


def invoke(store, i, ok=True, start=None):
    req = InvokeRequest(request_id=f"req-{i}", payload=b'{"n": %d}' % i, invoked_arn="a")
    res = InvokeResult(b"{}" if ok else b'{"errorType": "ValueError", "errorMessage": "x"}',
                       None if ok else "Unhandled", logs=[f"line {i}\n"], duration_ms=1.5,
                       max_rss_kb=20480, cold=i == 0, init_ms=3.0)
    t = start if start is not None else time.time()
    store.after_invoke(SPEC, req, res, t, t + 0.001)


async def test_records_are_written_and_queried(db):
    store = RecordStore(db)
    for i in range(5):
        invoke(store, i, ok=i != 3)
    rows = await store.query("f", limit=10)
    assert len(rows) == 5
    assert [r["status"] for r in rows if r["request_id"] == "req-3"] == ["error"]
    errors = await store.query("f", status="error")
    assert [r["request_id"] for r in errors] == ["req-3"]
    first = (await store.query(request_id="req-0"))[0]
    assert first["cold"] and first["init_ms"] == 3.0
    assert first["event"] == '{"n": 0}' and first["result"] == "{}"  # the dashboard shows them
    failed = (await store.query(request_id="req-3"))[0]
    assert failed["result"] is None and "ValueError" in failed["error"]
    assert "line 0" in first["logs"] and "REPORT RequestId: req-0" in first["logs"]


async def test_records_are_bounded_by_count_and_age(db):
    store = RecordStore(db, max_records=10, max_age_s=3600)
    invoke(store, 999, start=time.time() - 7200)  # too old
    for i in range(25):
        invoke(store, i, start=time.time() + i / 1000)
    await store.flush()
    rows = await store.query(limit=100)
    assert len(rows) == 10
    assert {r["request_id"] for r in rows} == {f"req-{i}" for i in range(15, 25)}


def test_log_text_reads_like_lambda():
    req = InvokeRequest(request_id="abc", payload=b"{}", invoked_arn="a")
    res = InvokeResult(b"{}", logs=["hello\n"], duration_ms=2.2, max_rss_kb=30 * 1024, cold=True,
                       init_ms=4.5, init_logs=["init\n"])
    text = lambda_log_text(SPEC, req, res)
    assert text.splitlines() == [
        "init", "START RequestId: abc Version: $LATEST", "hello", "END RequestId: abc",
        "REPORT RequestId: abc\tDuration: 2.20 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 30 MB\tInit Duration: 4.50 ms"]


async def test_large_payloads_are_kept_only_as_a_preview(db):
    store = RecordStore(db)
    req = InvokeRequest(request_id="big", payload=b"x" * 100_000, invoked_arn="a")
    store.after_invoke(SPEC, req, InvokeResult(b"{}"), time.time(), time.time())
    (row,) = await store.query(request_id="big")
    assert row["event"].startswith("x" * 4096) and row["event"].endswith("[100000 bytes]")
