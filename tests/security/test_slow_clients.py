"""Slow clients (slowloris) cannot take a node's descriptors: read timeouts and connection caps.

A real `dayfly up` runs with RLIMIT_NOFILE 1024 (prlimit); the test opens 1,000 connections
that send part of their headers and then nothing, and normal requests must still be served.
Every wait here is for an event (a reply, a closed socket, a log line); the timeouts only
bound how long a failure takes.
"""

from __future__ import annotations

import base64
import contextlib
import resource
import shutil
import socket
from collections.abc import Iterator

import httpx
import pytest
from conftest import Server, make_zip, start_server, stop_server

PARTIAL = b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
ECHO = {"handler.py": "def handler(event, context):\n    return event\n"}


@pytest.fixture(autouse=True, scope="module")
def many_files() -> Iterator[None]:
    """This process opens over 1,000 sockets: raise its own open-files limit for the module."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2500:
        pytest.skip("the test needs 2,500 open files")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def deploy_echo(server: Server) -> None:
    r = httpx.post(f"{server.url}/2015-03-31/functions", timeout=60, json={
        "FunctionName": "echo", "Handler": "handler.handler", "Runtime": "python3.11",
        "Code": {"ZipFile": base64.b64encode(make_zip(ECHO)).decode()}})
    assert r.status_code == 201, r.text


def slow(port: int, source: str, partial: bytes = PARTIAL) -> socket.socket:
    """A connection from `source` (a loopback address) that sends `partial` and then stalls."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(60)
    s.connect(("127.0.0.1", port))
    s.sendall(partial)
    return s


def read_to_end(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    return out


def still_open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def wait_for_log(server: Server, text: str) -> bool:
    """Poll the server's log for `text` (a line it writes); at most 30 s."""
    import time

    deadline = time.monotonic() + 30
    while text not in server.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def tight(tmp_path_factory) -> Iterator[Server]:
    """A node with 1,024 descriptors whose timeouts never fire during the test: only the
    connection caps protect it."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is needed to start the node with 1,024 files")
    srv = start_server(tmp_path_factory.mktemp("slow") / "data", "--header-timeout", "3600",
                       "--body-timeout", "3600", "--max-connections-per-client", "100",
                       prefix=("prlimit", "--nofile=1024:1024", "--"))
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Iterator[Server]:
    """A node with one-second read timeouts and 20 connections per client."""
    srv = start_server(tmp_path_factory.mktemp("quick") / "data", "--header-timeout", "1",
                       "--body-timeout", "1", "--max-connections-per-client", "20")
    try:
        yield srv
    finally:
        stop_server(srv)


def test_requests_are_served_while_1000_slow_connections_hold_a_1024_fd_node(tight):
    deploy_echo(tight)
    # 1,000 stalled connections from 20 addresses, 50 each (under the per-client cap: a
    # distributed attack); they connect one after another, so the node accepts them in order
    sockets = [slow(tight.port, f"127.0.1.{1 + i % 20}") for i in range(1000)]
    try:
        with httpx.Client(base_url=tight.url, timeout=30) as client:
            for i in range(30):
                r = client.post("/2015-03-31/functions/echo/invocations", json={"i": i})
                assert r.status_code == 200 and r.json() == {"i": i}
                assert client.get("/healthz").status_code == 200
        # the node made room by closing the connections that had waited longest for their
        # headers, with a 408; the newest are still held (their timeout is an hour away)
        assert read_to_end(sockets[0]).startswith(b"HTTP/1.1 408 ")
        assert still_open(sockets[-1])
        assert wait_for_log(tight, "closed to make room at the connection limit")
    finally:
        for s in sockets:
            s.close()


def test_a_client_over_its_connection_cap_is_refused_at_once(quick):
    held = [slow(quick.port, "127.0.2.1", b"") for _ in range(20)]
    try:
        extra = slow(quick.port, "127.0.2.1", b"")
        reply = read_to_end(extra)
        assert reply.startswith(b"HTTP/1.1 429 ") and b"retry-after: 1" in reply.lower()
        extra.close()
        # another client is not affected
        assert httpx.get(f"{quick.url}/healthz", timeout=30).status_code == 200
        assert wait_for_log(quick, "already had 20 connections open (429); from 127.0.2.1")
    finally:
        for s in held:
            s.close()


def test_headers_that_never_complete_get_408_and_are_closed(quick):
    sockets = [slow(quick.port, "127.0.3.1") for _ in range(10)]
    for s in sockets:
        with contextlib.closing(s):
            assert read_to_end(s).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    # a connection that sends nothing at all is closed the same way
    with contextlib.closing(slow(quick.port, "127.0.3.2", b"")) as s:
        assert read_to_end(s).startswith(b"HTTP/1.1 408 ")
    assert wait_for_log(quick, "did not send complete headers within 1.0 s (408, closed)")


def test_a_body_that_stalls_gets_408_and_is_closed(quick):
    deploy_echo(quick)
    head = (b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\": ")
    with contextlib.closing(slow(quick.port, "127.0.4.1", head)) as s:
        assert read_to_end(s).startswith(b"HTTP/1.1 408 ")
    assert wait_for_log(quick, "sent no body bytes for 1.0 s (408, closed)")
    r = httpx.post(f"{quick.url}/2015-03-31/functions/echo/invocations", json={"b": 1},
                   timeout=30)
    assert r.status_code == 200 and r.json() == {"b": 1}


def test_a_stalled_body_on_the_api_is_closed_without_a_traceback(quick):
    head = (b"POST /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Fun")
    with contextlib.closing(slow(quick.port, "127.0.5.1", head)) as s:
        assert read_to_end(s).startswith(b"HTTP/1.1 408 ")
    # the application saw the disconnect while reading the body; the next request is served
    # after it, and the log shows the closing, not an exception
    assert httpx.get(f"{quick.url}/healthz", timeout=30).status_code == 200
    assert "Traceback" not in quick.log() and "ClientDisconnect" not in quick.log()
