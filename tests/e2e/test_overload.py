"""A full queue refuses at once, with Retry-After (the goodput under overload is a benchmark:
benchmarks/overload.py).

The function waits for a gate file the test creates, so the instance is busy and the queue is
full by construction, not by timing. It runs on the `process` tier because that tier sees the
host's files (the gate); the queue is the scheduler's, the same for every tier.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, make_zip, start_server, stop_server
from e2e_helpers import wait_for

GATED = {"handler.py": """
    import os, time

    def handler(event, context):
        if "started" in event:
            open(event["started"], "w").close()
        while not os.path.exists(event["gate"]):  # the test opens the gate
            time.sleep(0.01)
        return {"done": event.get("n")}
"""}


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("overload") / "data", "--isolation", "process",
                       "--max-queue", "2", "--queue-timeout", "600")
    try:
        yield srv
    finally:
        stop_server(srv)


def deploy_gated(node: Server, name: str) -> str:
    """A function with one instance that waits for its event's gate file; its invoke URL."""
    r = httpx.post(f"{node.url}/2015-03-31/functions", timeout=60, json={
        "FunctionName": name, "Handler": "handler.handler", "Runtime": "python3.11",
        "Timeout": 600, "Code": {"ZipFile": base64.b64encode(make_zip(GATED)).decode()},
        "Dayfly": {"MaxInstances": 1}})
    assert r.status_code == 201, r.text
    return f"{node.url}/2015-03-31/functions/{name}/invocations"


@contextlib.contextmanager
def opened_at_end(gate: Path) -> Iterator[None]:
    """Open the gate when the block ends, even on failure, so no request is left waiting."""
    try:
        yield
    finally:
        gate.touch()


def metric(node: Server, name: str, function: str) -> float:
    text = httpx.get(f"{node.url}/metrics", timeout=30).text
    found = re.search(rf'^{name}{{function="{function}",version="\$LATEST"[^}}]*}} (\S+)$', text,
                      re.M)
    return float(found.group(1)) if found else 0.0


def test_a_full_queue_refuses_the_next_request_at_once_with_retry_after(node, tmp_path: Path):
    url = deploy_gated(node, "gated")
    gate, started = tmp_path / "gate", tmp_path / "started"

    def call(event: dict) -> httpx.Response:
        return httpx.post(url, json={"gate": str(gate), **event}, timeout=600)

    with concurrent.futures.ThreadPoolExecutor(4) as pool, opened_at_end(gate):
        first = pool.submit(call, {"started": str(started), "n": 0})
        assert wait_for(started.exists, timeout=60), "the first invocation never started"
        # the only instance is held by the gate: of three more requests two fill the queue
        # (max 2) and one is refused; nothing can succeed before the gate opens
        rest = [pool.submit(call, {"n": n}) for n in (1, 2, 3)]
        done, pending = concurrent.futures.wait(
            rest, timeout=60, return_when=concurrent.futures.FIRST_COMPLETED)
        assert len(done) == 1 and len(pending) == 2
        refused = done.pop().result()
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["__type"] == "TooManyRequestsException"
        assert "queued requests" in refused.json()["message"]
        assert not first.done()
        gate.touch()
        assert first.result().json() == {"done": 0}
        served = sorted(f.result().json()["done"] for f in pending)
        assert len(served) == 2 and set(served) <= {1, 2, 3}


def test_a_caller_that_hangs_up_leaves_the_queue_and_its_invocation_never_runs(node, tmp_path):
    url = deploy_gated(node, "hangup")
    gate, started = tmp_path / "gate", tmp_path / "started"

    def call(event: dict) -> httpx.Response:
        return httpx.post(url, json={"gate": str(gate), **event}, timeout=600)

    with concurrent.futures.ThreadPoolExecutor(4) as pool, opened_at_end(gate):
        first = pool.submit(call, {"started": str(started), "n": 0})
        assert wait_for(started.exists, timeout=60), "the first invocation never started"
        # a raw connection queues a request, then hangs up while it waits
        body = json.dumps({"gate": str(gate), "n": "gone"}).encode()
        host, port = node.url.removeprefix("http://").rsplit(":", 1)
        caller = socket.create_connection((host, int(port)), timeout=60)
        caller.sendall(b"POST /2015-03-31/functions/hangup/invocations HTTP/1.1\r\n"
                       b"Host: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
        second = pool.submit(call, {"n": 2})
        assert wait_for(lambda: metric(node, "dayfly_queued_invocations", "hangup") == 2,
                        timeout=60), "the two requests were never queued"
        caller.close()
        assert wait_for(lambda: metric(node, "dayfly_queued_invocations", "hangup") == 1,
                        timeout=60), "the request of a caller that hung up stayed queued"
        gate.touch()
        assert first.result().json() == {"done": 0}
        assert second.result().json() == {"done": 2}
    # FIFO: the hung-up request was before the second; it never ran
    assert metric(node, "dayfly_invocations_total", "hangup") == 2
