"""Sync invokes anywhere, run where there is room (dayfly/cluster/forward.py), on two real
`dayfly up --cluster` nodes sharing this machine's PostgreSQL and NATS.

The function `gate` has reserved concurrency 2, so each of the two nodes may run one instance
(scheduler/share.py). Its handler blocks until a file the test creates exists: with node a's
one instance held that way, an invoke sent to a runs on b, and its record says so; the reply
(function error, log tail) comes back unchanged; a forwarded request is never forwarded back;
and the node credential works on the invoke route only.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cluster_helpers import running_cluster
from conftest import ALLOW_WEAK, Server

from dayfly.cluster.credential import FORWARDED, NodeKey
from dayfly.cluster.forward import invoke_target
from dayfly.cluster.settings import ClusterSettings

A, B = "node0", "node1"  # node ids: a's sorts first
HANDLER = '''
import os, time

def handler(event, context):
    if event.get("started"):
        open(event["started"], "w").close()
    while event.get("gate") and not os.path.exists(event["gate"]):
        time.sleep(0.005)
    if event.get("fail"):
        print("about to fail")
        raise ValueError("asked to fail")
    return {"ok": True}
'''


def zipped(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", source)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[Server, Server, bytes]]:
    """Nodes a (node0) and b (node1) of a new cluster, and the cluster key."""
    with running_cluster(tmp_path_factory.mktemp("forward"), 2, *ALLOW_WEAK,
                         "--isolation", "process") as c:
        a, b = c.node(0), c.node(1)
        wait_until(lambda: c.live(0) == c.live(1) == ["node0", "node1"], "both nodes live")
        yield a, b, bytes.fromhex(c.key_file.read_text().strip())


def wait_until(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def share_nodes(srv: Server) -> float:
    text = httpx.get(f"{srv.url}/metrics").text
    return next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("dayfly_concurrency_share_nodes"))


def queued(srv: Server) -> float:
    text = httpx.get(f"{srv.url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("dayfly_queued_invocations{") and 'function="gate"' in line)


def forwarded(srv: Server, peer: str, outcome: str) -> float:
    text = httpx.get(f"{srv.url}/metrics").text
    want = f'dayfly_forwarded_invocations_total{{outcome="{outcome}",peer="{peer}"}}'
    alt = f'dayfly_forwarded_invocations_total{{peer="{peer}",outcome="{outcome}"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith((want, alt)))


@pytest.fixture(scope="module")
def gate(cluster) -> str:
    a, b, _ = cluster
    lam = a.lambda_client()
    lam.create_function(FunctionName="gate", Runtime="python3.11", Handler="handler.handler",
                        Role="arn:aws:iam::000000000000:role/x",
                        Code={"ZipFile": zipped(HANDLER)}, Timeout=60)
    lam.put_function_concurrency(FunctionName="gate", ReservedConcurrentExecutions=2)
    lam_b = b.lambda_client()

    def b_knows() -> bool:
        with contextlib.suppress(Exception):
            return lam_b.get_function_concurrency(FunctionName="gate").get(
                "ReservedConcurrentExecutions") == 2
        return False
    wait_until(b_knows, "node b sees the function and its reserved concurrency")
    wait_until(lambda: share_nodes(a) == 2 and share_nodes(b) == 2,
               "both nodes share concurrency limits between two nodes")
    return "gate"


def invoke(srv: Server, event: dict, **kw) -> httpx.Response:
    return httpx.post(f"{srv.url}{invoke_target('gate', None)}", json=event, timeout=60, **kw)


def record(srv: Server, request_id: str) -> dict:
    def found() -> bool:
        return httpx.get(f"{srv.url}/dayfly/v1/invocations/{request_id}").status_code == 200
    wait_until(found, f"the record of {request_id}")
    return httpx.get(f"{srv.url}/dayfly/v1/invocations/{request_id}").json()


@contextlib.contextmanager
def held(srv: Server, tmp: Path, tag: str) -> Iterator[Future]:
    """An invoke of `gate` sent to `srv`, running (its handler started) until the block ends."""
    started, release = tmp / f"{tag}.started", tmp / f"{tag}.go"
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(invoke, srv, {"started": str(started), "gate": str(release)})
        try:
            wait_until(started.exists, f"the handler of {tag} runs")
            yield fut
        finally:
            release.touch()
        assert fut.result().status_code == 200


def test_a_busy_node_forwards_to_a_node_with_room(cluster, gate, tmp_path):
    a, b, _ = cluster
    before = forwarded(a, B, "ok")
    with held(a, tmp_path, "first") as first:
        # a's one instance is busy: the next invoke sent to a runs on b
        started, release = tmp_path / "second.started", tmp_path / "second.go"
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(invoke, a, {"started": str(started), "gate": str(release)})
            wait_until(started.exists, "the forwarded invoke runs")
            assert not first.done()  # both run at once: the second did not wait for the first
            release.touch()
            reply = second.result()
    assert reply.status_code == 200 and reply.json() == {"ok": True}
    assert record(a, reply.headers["x-amzn-requestid"])["node"] == B
    assert record(b, first.result().headers["x-amzn-requestid"])["node"] == A
    assert forwarded(a, B, "ok") == before + 1


def test_the_reply_of_a_forwarded_invoke_comes_back_unchanged(cluster, gate, tmp_path):
    a, _, _ = cluster
    with held(a, tmp_path, "busy"):
        reply = invoke(a, {"fail": True}, headers={"X-Amz-Log-Type": "Tail"})
    assert reply.status_code == 200
    assert reply.headers["x-amz-function-error"] == "Unhandled"
    assert reply.json()["errorType"] == "ValueError"
    tail = base64.b64decode(reply.headers["x-amz-log-result"]).decode()
    assert "about to fail" in tail
    assert record(a, reply.headers["x-amzn-requestid"])["node"] == B
    assert forwarded(a, B, "function_error") >= 1


def test_a_forwarded_invoke_is_never_forwarded_again(cluster, gate, tmp_path):
    """Both nodes busy: an invoke sent to a goes to b, where it waits for b's instance (it is
    not sent back to a, whose instance frees first)."""
    a, b, _ = cluster
    back = forwarded(b, A, "ok") + forwarded(b, A, "throttled")
    with ThreadPoolExecutor(1) as pool, held(b, tmp_path, "on-b") as on_b:
        with held(a, tmp_path, "on-a"):
            third = pool.submit(invoke, a, {})
            wait_until(lambda: queued(b) == 1, "the forwarded invoke waits in b's queue")
        # a's instance is free now, b's still busy: the third keeps waiting on b
        assert not on_b.done() and not third.done() and queued(b) == 1
    reply = third.result()
    assert reply.status_code == 200
    assert record(a, reply.headers["x-amzn-requestid"])["node"] == B
    assert forwarded(b, A, "ok") + forwarded(b, A, "throttled") == back


def test_the_node_credential_is_for_the_invoke_route_only(cluster, gate):
    a, _, key = cluster
    node_key = NodeKey(ClusterSettings(database="", nats="", key=key).derive("node-to-node"),
                       B)
    target = invoke_target("gate", None)

    def send(method: str, path: str, body: bytes = b"{}", sign_body: bytes | None = None,
             **headers: str) -> httpx.Response:
        auth = node_key.sign(method, path, body if sign_body is None else sign_body, A)
        return httpx.request(method, f"{a.url}{path}", content=body, timeout=30,
                             headers={"authorization": auth, FORWARDED: B, **headers})

    ok = send("POST", target)
    assert ok.status_code == 200 and ok.json() == {"ok": True}
    assert record(a, ok.headers["x-amzn-requestid"])["node"] == A  # run where it landed
    assert send("POST", target, b'{"x": 1}', sign_body=b"{}").status_code == 403  # other body
    assert send("POST", target, **{"x-amz-invocation-type": "Event"}).status_code == 403
    forged = NodeKey(bytes(32), B).sign("POST", target, b"{}", A)
    assert httpx.post(f"{a.url}{target}", content=b"{}",
                      headers={"authorization": forged}).status_code == 403
    # a valid MAC for each of these requests, refused: deploy, S3, the API
    code = base64.b64encode(zipped(HANDLER)).decode()
    deploy = json.dumps({"FunctionName": "evil", "Runtime": "python3.11", "Role": "x",
                         "Handler": "handler.handler", "Code": {"ZipFile": code}}).encode()
    assert send("POST", "/2015-03-31/functions", deploy).status_code == 403
    assert send("PUT", "/2015-03-31/functions/gate/code", deploy).status_code == 403
    assert send("PUT", "/somebucket", b"").status_code == 403
    assert send("PUT", "/somebucket/key", b"data").status_code == 403
    assert send("GET", "/2015-03-31/functions", b"").status_code == 403
    assert httpx.get(f"{a.url}/2015-03-31/functions/evil").status_code == 404


def test_a_replayed_node_credential_is_refused(cluster, gate):
    a, _, key = cluster
    node_key = NodeKey(ClusterSettings(database="", nats="", key=key).derive("node-to-node"),
                       B)
    target = invoke_target("gate", None)
    headers = {"authorization": node_key.sign("POST", target, b"{}", A)}
    assert httpx.post(f"{a.url}{target}", content=b"{}", headers=headers).status_code == 200
    again = httpx.post(f"{a.url}{target}", content=b"{}", headers=headers)
    assert again.status_code == 403 and again.json()["__type"] == "AccessDeniedException"
    late = {"authorization": node_key.sign("POST", target, b"{}", A, now=time.time() - 120)}
    assert httpx.post(f"{a.url}{target}", content=b"{}", headers=late).status_code == 403
    # one made for another node (seen on its way there) is no good here
    elsewhere = {"authorization": node_key.sign("POST", target, b"{}", "node-c")}
    assert httpx.post(f"{a.url}{target}", content=b"{}", headers=elsewhere).status_code == 403

