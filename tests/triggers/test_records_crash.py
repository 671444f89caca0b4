"""No acknowledgement runs ahead of the record of what it covers: a table stream's checkpoint and
an async event's removal from the queue are on disk only after the invocation records of the
deliveries they cover. The server is killed with SIGKILL while the function holds a later
delivery on a gate the test controls, then restarted; every covered delivery has its record.

Records are written every hour here (`--records-flush-interval 3600`), so nothing but the
acknowledgement itself can have put them on disk before the kill."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import httpx
from conftest import ALLOW_WEAK, start_server, stop_server
from trigger_helpers import create_mapping, deploy, received, scratch_db, unique, wait_for

BATCH = 10
HOLD_AFTER = 20  # the stream's changes 1..20 are delivered; the batch with 21 waits on the gate

GATED = """
def behave(event):
    held = [r for r in event.get("Records", []) if int(r["dynamodb"]["SequenceNumber"]) > {hold}]
    if held or event.get("hold"):
        while not os.path.exists({gate!r}):  # the test opens the gate after the kill
            time.sleep(0.01)
    return {{"ok": True}}
"""


def server_db(srv, sql: str) -> list[tuple]:
    """Read the server's own database as it is on disk (what a crash leaves)."""
    conn = sqlite3.connect(f"file:{srv.data_dir / 'dayfly.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def has_record(srv, request_id: str) -> bool:
    r = httpx.get(f"{srv.url}/dayfly/v1/invocations/{request_id}", timeout=10)
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


def test_a_table_checkpoint_never_runs_ahead_of_its_records(tmp_path: Path):
    data, out, gate = tmp_path / "data", tmp_path / "out.jsonl", tmp_path / "gate"
    with scratch_db("sqlite", tmp_path) as db:
        t = db.create("stream", "id integer PRIMARY KEY, n integer")
        srv = start_server(data, *ALLOW_WEAK, "--records-flush-interval", "3600")
        try:
            fn = unique("ckpt")
            deploy(srv, fn, out, GATED.format(hold=HOLD_AFTER, gate=str(gate)), timeout=300)
            create_mapping(srv.lambda_client(), fn, db.url(t), BatchSize=BATCH)
            db.conn.executescript("BEGIN;" + "".join(
                f"INSERT INTO {t} VALUES ({i}, 1);" for i in range(1, 31)) + "COMMIT;")

            def seqs(inv: dict) -> list[int]:
                return [int(r["dynamodb"]["SequenceNumber"]) for r in inv["event"]["Records"]]
            # the function holds the batch past HOLD_AFTER: the consumer checkpointed the
            # batches before it (one batch at a time), and has nothing else in flight
            assert wait_for(lambda: any(max(seqs(i)) > HOLD_AFTER for i in received(out)), 60)
            (checkpoint,), = server_db(srv, "SELECT checkpoint FROM event_source_mappings")
            assert checkpoint == HOLD_AFTER
            covered = [i["rid"] for i in received(out) if max(seqs(i)) <= checkpoint]
            assert covered
            stop_server(srv, signal.SIGKILL)
            gate.touch()
            srv = start_server(data, *ALLOW_WEAK)
            missing = [rid for rid in covered if not has_record(srv, rid)]
            assert not missing, f"{len(missing)} of {len(covered)} checkpointed deliveries " \
                                f"have no invocation record"
        finally:
            stop_server(srv)


def test_an_acknowledged_async_event_always_has_its_record(tmp_path: Path):
    data, out, gate = tmp_path / "data", tmp_path / "out.jsonl", tmp_path / "gate"
    srv = start_server(data, *ALLOW_WEAK, "--records-flush-interval", "3600")
    try:
        fn = unique("acked")
        deploy(srv, fn, out, GATED.format(hold=HOLD_AFTER, gate=str(gate)), timeout=300)
        lam = srv.lambda_client()
        ids = []
        for i in range(6):
            r = lam.invoke(FunctionName=fn, InvocationType="Event",
                           Payload=b'{"hold": true}' if i == 5 else b'{"i": %d}' % i)
            assert r["StatusCode"] == 202
            meta = r["ResponseMetadata"]
            ids.append(meta.get("RequestId") or meta["HTTPHeaders"]["x-amzn-request-id"])
        held = ids[-1]
        # the five others were acknowledged (left the queue); the held one is still in it
        assert wait_for(lambda: server_db(srv, "SELECT id FROM events") == [(held,)], 60), \
            server_db(srv, "SELECT id FROM events")
        acked = ids[:-1]
        assert {i["rid"] for i in received(out)} >= set(acked)
        stop_server(srv, signal.SIGKILL)
        gate.touch()
        srv = start_server(data, *ALLOW_WEAK)
        missing = [rid for rid in acked if not has_record(srv, rid)]
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged events have no record"
    finally:
        stop_server(srv)
