"""runtime/runtime_api.py on its own: the Runtime API's HTTP handling against hostile and
malformed requests, with this test as the host (frames on a socket pair) and http.client or a
raw socket as the runtime. No bootstrap is started (its exit would end the process)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from dayfly.runtime import protocol
from dayfly.runtime.runtime_api import MAX_HEAD, RuntimeApi

NEXT = "/2018-06-01/runtime/invocation/next"


@pytest.fixture
def api() -> Iterator[tuple[RuntimeApi, socket.socket, int]]:
    """A relay serving on a free loopback port; the host's end of its channel; the port."""
    host, inst = socket.socketpair()
    relay = RuntimeApi(inst, {"code_dir": "/nonexistent", "max_output_bytes": 1000})
    relay.t_start = 0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    threading.Thread(target=relay._accept, args=(listener,), daemon=True).start()
    yield relay, host, listener.getsockname()[1]
    listener.close()
    host.close()
    inst.close()


def raw(port: int, data: bytes) -> bytes:
    """Send bytes, read the answer until the relay closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def invoke(host: socket.socket, rid: str, **meta) -> None:
    host.sendall(protocol.encode(protocol.INVOKE, {"id": rid, "deadline": 1, "arn": "arn:x",
                                                   **meta}, b'{"k": 1}'))


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /x SMTP/1.0\r\n\r\n", 400),
    (b"GET " + NEXT.encode() + b" HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /" + b"a" * (MAX_HEAD + 10), 431),
])
def test_unreadable_requests_get_a_4xx_and_a_closed_connection(api, request_bytes, status):
    _, _, port = api
    reply = raw(port, request_bytes)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:80]
    assert b"Connection: close" in reply


def test_wrong_paths_methods_and_ids(api):
    relay, _, port = api
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for method, path, status, kind in [
        ("GET", "/2018-06-01/runtime/nope", 404, "NotFound"),
        ("GET", "/other", 404, "NotFound"),
        ("POST", NEXT, 405, "MethodNotAllowed"),
        ("GET", "/2018-06-01/runtime/invocation/x/response", 405, "MethodNotAllowed"),
        ("POST", "/2018-06-01/runtime/invocation/x/response", 400, "InvalidRequestID"),
        ("POST", "/2018-06-01/runtime/invocation/x/error", 400, "InvalidRequestID"),
    ]:
        conn.request(method, path, body=b"{}")
        r = conn.getresponse()
        assert (r.status, json.loads(r.read())["errorType"]) == (status, kind), (method, path)
    assert relay.current is None  # nothing was taken for an invocation
    conn.close()


def test_an_invocation_through_hostile_fields_and_bodies(api):
    relay, host, port = api
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", NEXT)
    kind, meta, _ = protocol.read(host)
    assert kind == protocol.READY  # the first `next` ends init
    invoke(host, "r1", trace="Root=1\r\nX-Injected: 1", cc='{"custom": {}}')
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b'{"k": 1}'
    assert r.getheader("Lambda-Runtime-Aws-Request-Id") == "r1"
    assert r.getheader("Lambda-Runtime-Trace-Id") is None  # not split into two headers
    assert r.getheader("X-Injected") is None
    assert r.getheader("Lambda-Runtime-Client-Context") == '{"custom": {}}'

    other = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    other.request("GET", NEXT)  # while r1 is unanswered
    r = other.getresponse()
    assert (r.status, json.loads(r.read())["errorType"]) == (403, "InvalidStateTransition")
    other.request("POST", "/2018-06-01/runtime/init/error", body=b"{}")
    r = other.getresponse()
    assert (r.status, json.loads(r.read())["errorType"]) == (403, "InvalidStateTransition")

    bad_chunk = (b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert raw(port, bad_chunk).startswith(b"HTTP/1.1 400 ")
    bad_length = (b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n"
                  b"Content-Length: -5\r\n\r\n")
    assert raw(port, bad_length).startswith(b"HTTP/1.1 400 ")
    assert relay.current == "r1"  # still the runtime's to answer

    # past max_output (1000 here): 413, read no further, and the invocation fails
    too_big = (b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n"
               b"Content-Length: 1001\r\n\r\n")
    assert raw(port, too_big).startswith(b"HTTP/1.1 413 ")
    kind, meta, payload = protocol.read(host)
    assert kind == protocol.ERROR
    assert json.loads(payload)["errorType"] == "Function.ResponseSizeTooLarge"
    conn.request("POST", "/2018-06-01/runtime/invocation/r1/response", body=b"{}")
    r = conn.getresponse()
    assert (r.status, json.loads(r.read())["errorType"]) == (400, "InvalidRequestID")

    conn.request("GET", NEXT)
    invoke(host, "r2")
    assert conn.getresponse().read() == b'{"k": 1}'
    conn.request("POST", "/2018-06-01/runtime/invocation/r2/error", body=b"plain text",
                 headers={"Lambda-Runtime-Function-Error-Type": "Custom.Kind"})
    r = conn.getresponse()
    assert r.status == 202 and json.loads(r.read()) == {"status": "OK"}
    kind, meta, payload = protocol.read(host)
    assert kind == protocol.ERROR and set(meta) >= {"ns", "rss"}
    assert json.loads(payload) == {"errorMessage": "plain text", "errorType": "Custom.Kind",
                                   "stackTrace": [], "requestId": "r2"}
    conn.close()
    other.close()


def test_expect_100_continue_only_for_a_body_that_fits(api):
    _, host, port = api
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", NEXT)
    protocol.read(host)  # READY
    invoke(host, "r1")
    conn.getresponse().read()
    head = (b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2000\r\n\r\n")
    assert raw(port, head).startswith(b"HTTP/1.1 413 ")  # no 100 Continue first
    protocol.read(host)  # the invocation's ERROR
    conn.request("GET", NEXT)
    invoke(host, "r2")
    conn.getresponse().read()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.replace(b"r1", b"r2").replace(b"2000", b"2"))
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"{}")
        assert s.recv(100).startswith(b"HTTP/1.1 202 ")
    kind, _, payload = protocol.read(host)
    assert (kind, payload) == (protocol.RESULT, b"{}")
    conn.close()


def test_a_custom_runtimes_handler_is_its_own():
    from dayfly.control import manifest
    from dayfly.control.functions import api_values
    from dayfly.errors import InvalidParameter

    m = manifest.parse('runtime = "provided.al2023"\nhandler = "bootstrap"\n')
    assert (m.runtime, m.handler) == ("provided.al2023", "bootstrap")
    assert api_values({"Runtime": "provided", "Handler": "my.weird-handler"})["handler"]
    for bad in ('runtime = "provided"\nhandler = "two words"\n',
                'runtime = "python3.11"\nhandler = "bootstrap"\n'):
        with pytest.raises(InvalidParameter):
            manifest.parse(bad)
    with pytest.raises(InvalidParameter, match="AWS_LAMBDA_RUNTIME_API is reserved"):
        manifest.parse('[env]\nAWS_LAMBDA_RUNTIME_API = "1.2.3.4:80"\n')


def test_an_http_1_0_request_gets_its_connection_closed(api):
    _, _, port = api
    reply = raw(port, b"GET /nope HTTP/1.0\r\n\r\n")  # returns only once the relay closes
    assert reply.startswith(b"HTTP/1.1 404 ") and b"Connection: close" in reply
