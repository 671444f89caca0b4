"""A function cannot spend the node's descriptors through its declared network: each relayed
connection holds two of them, so one function may have MAX_OPEN relayed at once on a node, and
those past it are reset (sandbox/linux/egress.py). Linux tier, as root: its instances inherit
the platform's own descriptor limit, so without the cap one instance could open thousands."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import make_zip

from dayfly.sandbox.linux.backend import LinuxBackend
from dayfly.sandbox.linux.egress import MAX_OPEN

pytestmark = pytest.mark.skipif(not LinuxBackend.available()[0],
                                reason="the linux tier is not available here")

OPENER = """
import socket


def handler(event, context):
    socks = [socket.create_connection(("127.0.0.1", event["port"]), timeout=10)
             for _ in range(event["n"])]
    echoed = 0
    for s in socks:
        try:
            s.sendall(b"x")
            echoed += s.recv(1) == b"x"
        except OSError:  # reset by the node: one too many
            pass
    for s in socks:
        s.close()
    return {"echoed": echoed}
"""


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    socketserver.ThreadingTCPServer.daemon_threads = True
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    srv.request_queue_size = 1024
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def _deploy(server, name: str, manifest: str) -> None:
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=make_zip({"handler.py": OPENER, "dayfly.toml": manifest}),
                      headers={"content-type": "application/zip"}, timeout=120) as r:
        last = [json.loads(line) for line in r.iter_lines() if line.strip()][-1]
    assert "function" in last, last


def _call(server, name: str, **event) -> dict:
    r = httpx.post(f"{server.url}/2015-03-31/functions/{name}/invocations", json=event,
                   timeout=120)
    assert r.status_code == 200 and "x-amz-function-error" not in r.headers, r.text
    return r.json()


def test_one_function_cannot_hold_more_than_its_share_of_relayed_connections(server, echo):
    _deploy(server, "opener", f'isolation = "linux"\ntimeout = 60\n'
                              f'network = ["127.0.0.1:{echo}"]\n')
    extra = 40
    assert _call(server, "opener", port=echo, n=MAX_OPEN + extra) == {"echoed": MAX_OPEN}
    # the node served on meanwhile, and every one is given back once closed (their ends are
    # seen by the node's loop after the answer: a few calls may find some still open)
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    deadline = time.monotonic() + 60
    while (got := _call(server, "opener", port=echo, n=MAX_OPEN)) != {"echoed": MAX_OPEN}:
        assert time.monotonic() < deadline, got
