"""No acknowledged object change loses its event: 1,000 PutObjects to a triggering bucket, the
server killed with SIGKILL partway, restarted on the same data dir, and every PutObject that
returned 200 is delivered at least once."""

from __future__ import annotations

import signal
import threading

import pytest
from bucket_helpers import deploy, lambda_config, notify, s3_client, wait_for
from conftest import ALLOW_WEAK, start_server, stop_server

TOTAL, KILL_AFTER = 1000, 400
HOLD = 50  # deliveries of k0050 on wait on a gate the test opens after the kill


@pytest.mark.slow
def test_every_acknowledged_put_is_delivered_after_kill_9(tmp_path):
    data, seen, gate = tmp_path / "data", tmp_path / "seen.txt", tmp_path / "gate"
    # the handler appends to a host file, so it runs in the process tier (the linux tier,
    # rightly, gives it no writable host path); from k0050 on it waits for the gate, so
    # deliveries are still pending at the kill on any machine, however fast
    handler = f"""
import os, time
def handler(event, context):
    key = event["Records"][0]["s3"]["object"]["key"]
    while int(key[1:]) >= {HOLD} and not os.path.exists({str(gate)!r}):
        time.sleep(0.01)
    with open({str(seen)!r}, "a") as f:
        f.write(key + "\\n")
"""
    srv = start_server(data, *ALLOW_WEAK)
    deploy(srv, "recorder", {"handler.py": handler,
                             "dayfly.toml": 'isolation = "process"\nmax_instances = 2\n'
                                            'timeout = 300\n'})
    s3 = s3_client(srv)
    s3.create_bucket(Bucket="stream")
    notify(s3, "stream", lambda_config("recorder", ["s3:ObjectCreated:*"]))
    acked: list[str] = []
    killed = threading.Event()

    def killer() -> None:
        wait_for(lambda: len(acked) >= KILL_AFTER, 120)
        stop_server(srv, signal.SIGKILL)
        killed.set()
    threading.Thread(target=killer, daemon=True).start()
    i, restarted = 0, None
    try:
        while i < TOTAL:
            key = f"k{i:04d}"
            try:
                s3.put_object(Bucket="stream", Key=key, Body=b"x" * 100)
            except Exception:
                # not acknowledged: after the restart it is written again, then acknowledged
                assert killed.wait(30), "a PutObject failed before the kill"
                if restarted is None:
                    before = set(seen.read_text().split()) if seen.exists() else set()
                    assert len(before) <= HOLD < len(acked), "the gate did not hold"
                    gate.touch()
                    restarted = start_server(data, *ALLOW_WEAK)
                    s3 = s3_client(restarted)
                continue
            acked.append(key)
            i += 1
        assert restarted is not None and len(acked) == TOTAL
        assert wait_for(lambda: seen.exists() and set(acked) <= set(seen.read_text().split()),
                        120), f"missing: {sorted(set(acked) - set(seen.read_text().split()))[:20]}"
    finally:
        stop_server(restarted or srv)
