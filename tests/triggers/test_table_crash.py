"""Crash safety: 1,000 committed changes stream in while `dayfly up` is killed with SIGKILL and
restarted on the same data directory; every change is delivered at least once, in order."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import ALLOW_WEAK, start_server, stop_server
from trigger_helpers import create_mapping, deploy, records, scratch_db, unique, wait_for

CHANGES = 1000
KEYS = 20
BATCH = 10
HOLD = 15  # a batch setting some n past this waits on a gate the test opens after the kill

GATED = """
def behave(event):
    if any(int(r["dynamodb"]["NewImage"]["n"]["N"]) > {hold} for r in event["Records"]):
        while not os.path.exists({gate!r}):
            time.sleep(0.01)
    return {{"ok": True}}
"""


def held(record: dict) -> bool:
    return int(record["dynamodb"]["NewImage"]["n"]["N"]) > HOLD


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_no_committed_change_is_lost_across_a_sigkill(kind, tmp_path: Path):
    data = tmp_path / "data"
    out, gate = tmp_path / "out.jsonl", tmp_path / "gate"
    with scratch_db(kind, tmp_path) as db:
        t = db.create("stream", "id integer PRIMARY KEY, n integer")
        srv = start_server(data, *ALLOW_WEAK)
        try:
            fn = unique("crash")
            # the stream stops at the gate: the kill comes mid-stream on any machine
            deploy(srv, fn, out, GATED.format(hold=HOLD, gate=str(gate)), timeout=300)
            create_mapping(srv.lambda_client(), fn, db.url(t), BatchSize=BATCH)
            done = threading.Event()

            def write() -> None:
                for i in range(CHANGES):
                    key = i % KEYS
                    if i < KEYS:
                        db.sql(f"INSERT INTO {db.ns}{t} VALUES (?, 1)", key)
                    else:
                        db.sql(f"UPDATE {db.ns}{t} SET n = n + 1 WHERE id = ?", key)
                    if i % 50 == 0:
                        time.sleep(0.05)  # a steady stream, not one burst
                done.set()

            writer = threading.Thread(target=write)
            writer.start()
            assert wait_for(lambda: any(held(r) for r in records(out)), 60), "nothing held"
            stop_server(srv, signal.SIGKILL)
            killed_at = len(records(out))
            gate.touch()
            srv = start_server(data, *ALLOW_WEAK)
            writer.join(120)
            assert done.is_set()
            assert wait_for(lambda: len({r["dynamodb"]["SequenceNumber"]
                                         for r in records(out)}) >= CHANGES, 120), (
                len(records(out)), srv.log()[-2000:])
            # acknowledged changes are pruned from the change log (the newest row stays)
            assert wait_for(lambda: db.sql(
                f"SELECT count(*) FROM {db.ns}_dayfly_log_{t}")[0][0] <= 1, 10)
        finally:
            stop_server(srv)
    recs = records(out)
    assert killed_at <= HOLD * KEYS + BATCH < CHANGES, "the gate did not hold the stream"
    seen: set[int] = set()
    first: list[dict] = []
    for r in recs:
        seq = int(r["dynamodb"]["SequenceNumber"])
        if seq not in seen:
            seen.add(seq)
            first.append(r)
    assert len(first) == CHANGES
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in first]
    assert seqs == sorted(seqs)  # first deliveries in commit order
    assert len(recs) - len(first) <= BATCH  # only the batch in flight is redelivered
    per_key: dict[str, list[int]] = {}
    for r in first:
        per_key.setdefault(r["dynamodb"]["Keys"]["id"]["N"], []).append(
            int(r["dynamodb"]["NewImage"]["n"]["N"]))
    assert len(per_key) == KEYS
    for values in per_key.values():
        assert values == list(range(1, CHANGES // KEYS + 1))
