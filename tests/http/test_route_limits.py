"""Per-route limits, CORS, records and metrics, and bad HTTP on the route path, against a real
`dayfly up`: a body over `max_body` is a 413, a route over its rate a 429 with Retry-After,
huge headers, unknown methods, Content-Length with Transfer-Encoding and slow clients a 4xx;
none of them reaches the handler (each function here counts its calls in its /metrics line)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from conftest import start_server, stop_server
from http_helpers import deploy, unique

ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("limits") / "data", "--header-timeout", "1",
                       "--body-timeout", "1")
    try:
        lam = srv.lambda_client()
        tag = unique("lim")
        deploy(lam, tag, f"""
            [http]
            routes = ["GET /{tag}/get", {{ route = "POST /{tag}/small", max_body = 1024 }},
                      {{ route = "GET /{tag}/rated", rate_limit = {{ rps = 0.001, burst = 2 }} }},
                      "ANY /{tag}/any"]
            [http.cors]
            allow_origins = ["{ORIGIN}"]
            allow_methods = ["GET", "POST"]
            expose_headers = ["x-route"]
            max_age = 60
        """)
        yield srv, tag
    finally:
        stop_server(srv)


def invocations(srv, name: str) -> int:
    """Finished invocations of `name` so far (its /metrics counters)."""
    total = 0
    for line in httpx.get(f"{srv.url}/metrics").text.splitlines():
        if line.startswith(f'dayfly_invocations_total{{function="{name}"'):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def raw(srv, data: bytes, wait_close: bool = True) -> bytes:
    """Send bytes on one connection; return what came back until the server closed it."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
            if not wait_close and b"\r\n\r\n" in out:
                return out


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def test_body_over_max_body_is_413_and_never_runs(node):
    srv, tag = node
    before = invocations(srv, tag)
    big = httpx.post(f"{srv.url}/{tag}/small", content=b"x" * 2000)
    assert big.status_code == 413 and "max_body" in big.json()["message"]

    def chunks():
        for _ in range(3):
            yield b"y" * 600

    chunked = httpx.post(f"{srv.url}/{tag}/small", content=chunks())
    assert chunked.status_code == 413
    assert httpx.post(f"{srv.url}/{tag}/small", content=b"z" * 1000).status_code == 200
    assert invocations(srv, tag) == before + 1


def test_rate_limit_is_429_with_retry_after(node):
    srv, tag = node
    url = f"{srv.url}/{tag}/rated"
    assert [httpx.get(url).status_code for _ in range(2)] == [200, 200]
    third = httpx.get(url)
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    assert httpx.get(f"{srv.url}/{tag}/get").status_code == 200  # per route


def test_cors_on_routes(node):
    srv, tag = node
    before = invocations(srv, tag)
    pre = httpx.options(f"{srv.url}/{tag}/get", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ORIGIN
    assert pre.headers["access-control-max-age"] == "60"
    refused = httpx.options(f"{srv.url}/{tag}/get", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert refused.status_code == 403
    assert invocations(srv, tag) == before  # preflights never woke the function
    # a cross-site call: not refused by the node's origin guard (a route is for browsers), and
    # the CORS headers are added for the allowed origin only
    r = httpx.get(f"{srv.url}/{tag}/get", headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-expose-headers"] == "x-route"
    other = httpx.get(f"{srv.url}/{tag}/get", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_records_name_their_route_and_metrics_count_per_route(node):
    srv, tag = node
    assert httpx.get(f"{srv.url}/{tag}/get?status=404").status_code == 404
    deadline = time.monotonic() + 10
    triggers: set[str] = set()
    while time.monotonic() < deadline and f"http:GET /{tag}/get" not in triggers:
        page = httpx.get(f"{srv.url}/dayfly/v1/functions/{tag}/invocations").json()
        items = page.get("invocations", page.get("Invocations", page))
        triggers = {i.get("trigger") for i in items if isinstance(i, dict)}
    assert f"http:GET /{tag}/get" in triggers
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert (f'dayfly_http_requests_total{{function="{tag}",route="GET /{tag}/get",'
            f'status="404"}}' in metrics)


def test_bad_http_on_the_route_path_never_reaches_the_handler(node):
    srv, tag = node
    before = invocations(srv, tag)
    path = f"/{tag}/any".encode()
    host = f"Host: 127.0.0.1:{srv.port}\r\n".encode()
    huge = raw(srv, b"GET " + path + b" HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 200_000
               + b"\r\n\r\n")
    assert 400 <= status(huge) < 500, huge[:200]
    bad_method = raw(srv, b"FROB " + path + b" HTTP/1.1\r\n" + host + b"\r\n")
    assert 400 <= status(bad_method) < 500, bad_method[:200]
    smuggle = raw(srv, b"POST " + path + b" HTTP/1.1\r\n" + host + b"Content-Length: 4\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET " + path + b" HTTP/1.1\r\n"
                  + host + b"\r\n")
    assert 400 <= status(smuggle) < 500 and smuggle.count(b"HTTP/1.1 ") == 1, smuggle[:300]
    slow_headers = raw(srv, b"GET " + path + b" HTTP/1.1\r\n" + host)  # never finished
    assert status(slow_headers) == 408
    slow_body = raw(srv, b"POST " + path + b" HTTP/1.1\r\n" + host
                    + b"Content-Length: 100\r\n\r\n0123456789")  # 90 bytes never come
    assert status(slow_body) in (0, 408), slow_body[:200]
    assert invocations(srv, tag) == before
