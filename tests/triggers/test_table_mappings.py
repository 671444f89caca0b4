"""Event source mappings end to end: a real `dayfly up`, boto3's lambda client, real SQLite
files and the real PostgreSQL server; functions record what they receive (process tier)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ALLOW_WEAK
from trigger_helpers import (
    DB,
    create_mapping,
    deploy,
    received,
    records,
    scratch_db,
    unique,
    wait_for,
)

SERVER_ARGS = ALLOW_WEAK  # trigger_helpers' recorder writes a host file: process tier

KINDS = ["sqlite", "postgresql"]


@pytest.fixture(params=KINDS)
def db(request, tmp_path: Path) -> Iterator[DB]:
    with scratch_db(request.param, tmp_path) as d:
        yield d


def ok_invocations(out: Path, failing: Callable[[list], bool]) -> list[list[str]]:
    """Sequence numbers of each invocation that `failing(records)` says succeeded."""
    return [[r["dynamodb"]["SequenceNumber"] for r in inv["event"]["Records"]]
            for inv in received(out) if not failing(inv["event"]["Records"])]


def test_records_for_every_view_type(server, lam, db: DB, tmp_path):
    fn, out = unique("views"), tmp_path / "views.jsonl"
    deploy(server, fn, out)
    arns = {}
    for view in ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        t = db.create(f"t_{view.lower()}")
        base, _, table = db.url(t).partition("#")
        m = create_mapping(lam, fn, f"arn:dayfly:table:{base}?view={view}#{table}")
        arns[m["EventSourceArn"]] = view
        db.sql(f"INSERT INTO {db.ns}{t} VALUES (1, 'pen', 1.5, ?, ?, NULL)", True, b"\x01")
        db.sql(f"UPDATE {db.ns}{t} SET name = 'ink' WHERE id = 1")
        db.sql(f"DELETE FROM {db.ns}{t} WHERE id = 1")
    assert wait_for(lambda: len(records(out)) >= 12, 60), received(out)
    by_arn: dict[str, list[dict]] = {}
    for r in records(out):
        by_arn.setdefault(r["dayfly"]["eventSourceArn"], []).append(r)
    assert set(by_arn) == set(arns)
    for arn, recs in by_arn.items():
        view = arns[arn]
        assert [r["eventName"] for r in recs] == ["INSERT", "MODIFY", "REMOVE"]
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in recs]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        for r in recs:
            assert r["eventSource"] == "aws:dynamodb" and r["eventVersion"] == "1.1"
            table = arn.rpartition("#")[2]  # schema.table on PostgreSQL
            assert r["eventSourceARN"].startswith(
                f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/{db.kind}:")
            assert r["awsRegion"] == "us-east-1" and len(r["eventID"]) == 32
            ddb = r["dynamodb"]
            assert ddb["Keys"] == {"id": {"N": "1"}} and ddb["StreamViewType"] == view
            assert ddb["SizeBytes"] > 0 and isinstance(ddb["ApproximateCreationDateTime"], int)
        ins, mod, rem = (r["dynamodb"] for r in recs)
        new_wanted = view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
        old_wanted = view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
        assert ("NewImage" in ins) == new_wanted and "OldImage" not in ins
        assert ("OldImage" in rem) == old_wanted and "NewImage" not in rem
        assert ("NewImage" in mod, "OldImage" in mod) == (new_wanted, old_wanted)
        if new_wanted:
            assert ins["NewImage"] == {"id": {"N": "1"}, "name": {"S": "pen"},
                                       "price": {"N": "1.5"}, "paid": {"BOOL": True},
                                       "data": {"B": "AQ=="}, "meta": {"NULL": True}}
            assert mod["NewImage"]["name"] == {"S": "ink"}
        if old_wanted:
            assert rem["OldImage"]["name"] == {"S": "ink"}
    invs = server_invocations(server, fn)
    assert invs and all(i["trigger"] == "table" and i["status"] == "success" for i in invs)


def server_invocations(server, fn: str) -> list[dict]:
    import httpx

    return httpx.get(f"{server.url}/dayfly/v1/functions/{fn}/invocations").json()["invocations"]


def test_batch_size_and_batching_window(server, lam, db: DB, tmp_path):
    fn, out = unique("batch"), tmp_path / "batch.jsonl"
    deploy(server, fn, out)
    t = db.create("orders")
    create_mapping(lam, fn, db.url(t), BatchSize=5, MaximumBatchingWindowInSeconds=2)
    db.sql("BEGIN")
    for i in range(12):
        db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (?)", i)
    db.sql("COMMIT")
    assert wait_for(lambda: len(records(out)) >= 12, 30)
    assert [len(inv["event"]["Records"]) for inv in received(out)] == [5, 5, 2]
    out.unlink()
    for i in range(100, 103):  # three commits within the window: one batch
        db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (?)", i)
    assert wait_for(lambda: len(records(out)) >= 3, 30)
    assert [len(inv["event"]["Records"]) for inv in received(out)] == [3]


def test_order_is_kept_per_key_under_concurrent_writers(server, lam, db: DB, tmp_path):
    fn, out = unique("order"), tmp_path / "order.jsonl"
    deploy(server, fn, out)
    t = db.create("counters", "id integer PRIMARY KEY, n integer")
    for k in range(5):
        db.sql(f"INSERT INTO {db.ns}{t} VALUES (?, 0)", k)
    create_mapping(lam, fn, db.url(t), BatchSize=7)

    def writer(keys: list[int]) -> None:
        with scratch_conn(db) as conn:
            for i in range(40):
                conn.execute(f"UPDATE {db.ns}{t} SET n = n + 1 WHERE id = {keys[i % len(keys)]}")

    threads = [threading.Thread(target=writer, args=([0, 1, 2],)),
               threading.Thread(target=writer, args=([2, 3, 4],))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert wait_for(lambda: len(records(out)) >= 80, 60), len(records(out))
    recs = records(out)
    assert len(recs) == 80
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in recs]
    assert seqs == sorted(seqs)
    per_key: dict[str, list[int]] = {}
    for r in recs:
        per_key.setdefault(r["dynamodb"]["Keys"]["id"]["N"], []).append(
            int(r["dynamodb"]["NewImage"]["n"]["N"]))
    for values in per_key.values():
        assert values == list(range(1, len(values) + 1))


class scratch_conn:
    """A second connection to the same database, for concurrent writers."""

    def __init__(self, db: DB) -> None:
        self.db = db

    def __enter__(self):
        if self.db.kind == "sqlite":
            import sqlite3

            self.conn = sqlite3.connect(self.db.base[len("sqlite://"):], isolation_level=None,
                                        timeout=30)
        else:
            import psycopg

            self.conn = psycopg.connect(self.db.base, autocommit=True)
        return self.conn

    def __exit__(self, *exc) -> None:
        self.conn.close()


FAIL_ALWAYS = """
def behave(event):
    raise RuntimeError("nope")
"""


def test_failing_batches_are_retried_then_sent_to_the_on_failure_destination(
        server, lam, tmp_path):
    with scratch_db("sqlite", tmp_path) as db:
        fn, out = unique("fails"), tmp_path / "fails.jsonl"
        dest, dest_out = unique("dest"), tmp_path / "dest.jsonl"
        deploy(server, fn, out, FAIL_ALWAYS)
        deploy(server, dest, dest_out)
        t = db.create("orders")
        m = create_mapping(lam, fn, db.url(t), MaximumRetryAttempts=2, DestinationConfig={
            "OnFailure": {"Destination": f"arn:aws:lambda:us-east-1:000000000000:function:{dest}"}})
        db.sql(f"INSERT INTO {t} (id) VALUES (1)")
        assert wait_for(lambda: received(dest_out), 30)
        assert len(received(out)) == 3  # the first attempt and two retries
        keys = {inv["key"] for inv in received(out)}
        assert len(keys) == 1 and m["UUID"] in keys.pop()  # one idempotency key for all three
        failure = received(dest_out)[0]["event"]
        seq = received(out)[0]["event"]["Records"][0]["dynamodb"]["SequenceNumber"]
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert failure["requestContext"]["approximateInvokeCount"] == 3
        assert failure["requestContext"]["functionArn"].endswith(f":function:{fn}")
        assert failure["responseContext"]["functionError"] == "Unhandled"
        info = failure["DDBStreamBatchInfo"]
        assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (seq, seq)
        rec = received(out)[0]["event"]["Records"][0]
        assert info["batchSize"] == 1 and info["streamArn"] == rec["eventSourceARN"]
        assert failure["dayfly"]["eventSourceArn"] == m["EventSourceArn"]
        got = lam.get_event_source_mapping(UUID=m["UUID"])
        assert got["LastProcessingResult"] == "PROBLEM: Function call failed"


def test_records_older_than_the_maximum_age_go_to_the_on_failure_destination(
        server, lam, tmp_path):
    with scratch_db("sqlite", tmp_path) as db:
        fn, out = unique("aged"), tmp_path / "aged.jsonl"
        dest, dest_out = unique("agedest"), tmp_path / "agedest.jsonl"
        deploy(server, fn, out)
        deploy(server, dest, dest_out)
        t = db.create("aged")
        m = create_mapping(lam, fn, db.url(t), MaximumRecordAgeInSeconds=60, DestinationConfig={
            "OnFailure": {"Destination": f"arn:aws:lambda:us-east-1:000000000000:function:{dest}"}},
            Enabled=False)
        db.sql(f"INSERT INTO {t} (id) VALUES (1)")
        # the change was captured two minutes "ago": older than MaximumRecordAgeInSeconds
        db.sql(f"UPDATE _dayfly_log_{t} SET ts = ts - 120")
        db.sql(f"INSERT INTO {t} (id) VALUES (2)")  # a fresh one, delivered normally
        lam.update_event_source_mapping(UUID=m["UUID"], Enabled=True)
        assert wait_for(lambda: received(dest_out) and records(out), 30)
        failure = received(dest_out)[0]["event"]
        assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
        assert failure["DDBStreamBatchInfo"]["batchSize"] == 1
        assert [r["dynamodb"]["Keys"]["id"] for r in records(out)] == [{"N": "2"}]


POISON = """
def behave(event):
    if any(r["dynamodb"]["NewImage"].get("name") == {"S": "poison"} for r in event["Records"]):
        raise RuntimeError("poison record")
    return {}
"""


def is_poisoned(recs: list[dict]) -> bool:
    return any(r["dynamodb"]["NewImage"].get("name") == {"S": "poison"} for r in recs)


def test_bisect_isolates_the_failing_record(server, lam, tmp_path):
    with scratch_db("sqlite", tmp_path) as db:
        fn, out = unique("bisect"), tmp_path / "bisect.jsonl"
        dest, dest_out = unique("dest"), tmp_path / "dest.jsonl"
        deploy(server, fn, out, POISON)
        deploy(server, dest, dest_out)
        t = db.create("orders")
        create_mapping(lam, fn, db.url(t), BatchSize=8, BisectBatchOnFunctionError=True,
                       MaximumRetryAttempts=0,
                       DestinationConfig={"OnFailure": {"Destination": dest}})
        db.sql("BEGIN")
        for i in range(8):
            db.sql(f"INSERT INTO {t} (id, name) VALUES (?, ?)", i, "poison" if i == 5 else "ok")
        db.sql("COMMIT")
        assert wait_for(lambda: received(dest_out), 30)
        info = received(dest_out)[0]["event"]["DDBStreamBatchInfo"]
        poison_seq = next(r["dynamodb"]["SequenceNumber"] for r in records(out)
                          if r["dynamodb"]["Keys"]["id"]["N"] == "5")
        assert info["batchSize"] == 1 and info["startSequenceNumber"] == poison_seq
        delivered = sorted(int(s) for inv in ok_invocations(out, is_poisoned) for s in inv)
        all_seqs = sorted({int(r["dynamodb"]["SequenceNumber"]) for r in records(out)})
        assert delivered == [s for s in all_seqs if s != int(poison_seq)]
        assert [len(inv["event"]["Records"]) for inv in received(out)][:3] == [8, 4, 4]


FLAKY = """
import os

def behave(event):
    marker = OUT + ".failed-once"
    for r in event["Records"]:
        if r["dynamodb"]["NewImage"].get("name") == {"S": "flaky"} and not os.path.exists(marker):
            open(marker, "w").close()
            return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}
"""


def test_partial_batch_response_retries_from_the_first_failed_record(server, lam, tmp_path):
    with scratch_db("sqlite", tmp_path) as db:
        fn, out = unique("partial"), tmp_path / "partial.jsonl"
        deploy(server, fn, out, FLAKY)
        t = db.create("orders")
        create_mapping(lam, fn, db.url(t), BatchSize=10,
                       FunctionResponseTypes=["ReportBatchItemFailures"])
        db.sql("BEGIN")
        for i in range(1, 6):
            db.sql(f"INSERT INTO {t} (id, name) VALUES (?, ?)", i, "flaky" if i == 3 else "ok")
        db.sql("COMMIT")
        assert wait_for(lambda: len(received(out)) >= 2, 30)
        batches = [[r["dynamodb"]["Keys"]["id"]["N"] for r in inv["event"]["Records"]]
                   for inv in received(out)]
        assert batches == [["1", "2", "3", "4", "5"], ["3", "4", "5"]]


def test_lag_is_exported_while_changes_wait(server, lam, db: DB, tmp_path):
    """`dayfly_event_source_lag_records` counts committed changes not yet delivered."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    fn, out = unique("laggy"), tmp_path / "laggy.jsonl"
    deploy(server, fn, out, behave="""
        import time
        def behave(event):
            time.sleep(0.5)
            return {"ok": True}
    """)
    t = db.create("t_lag")
    m = create_mapping(lam, fn, f"arn:dayfly:table:{db.url(t)}", BatchSize=1)
    for i in range(12):
        db.sql(f"INSERT INTO {db.ns}{t} VALUES (?, 'x', 1.0, ?, NULL, NULL)", i, True)

    def lag() -> float | None:
        text = httpx.get(f"{server.url}/metrics").text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "dayfly_event_source_lag_records" and s.labels["uuid"] == m["UUID"]:
                    return s.value
        return None

    assert wait_for(lambda: (lag() or 0) >= 3, 20)  # a backlog shows while the slow handler works
    assert wait_for(lambda: lag() == 0 and len(records(out)) == 12, 60)  # and drains to zero
