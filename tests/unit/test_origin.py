"""The front door's decision (gateway/origin.py): which Host, Origin and content type a request
may carry, by route family, for the policy `dayfly up` builds from --host, --allow-host and
--allow-origin."""

from __future__ import annotations

import logging
import socket

import pytest

from dayfly.gateway.classify import Family, Form, Route
from dayfly.gateway.origin import LOG_BURST, OriginGuard, Policy, host_name, refusal

LOOPBACK = Policy.of("127.0.0.1")
API, INVOKE, S3, INGEST = (Route(f, Form.NONE) for f in
                           (Family.API, Family.INVOKE, Family.S3, Family.INGEST))


def headers(**h: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in h.items()]


@pytest.mark.parametrize(("authority", "name"), [
    ("127.0.0.1:8080", "127.0.0.1"), ("[::1]:8080", "::1"), ("LocalHost", "localhost"),
    ("evil.example.:80", "evil.example"), ("::1", "::1"), ("[::1]", "::1"),
    ("127.0.0.1:80@evil.example", "127.0.0.1:80@evil.example"), ("[::1]x", "[::1]x")])
def test_host_name(authority, name):
    assert host_name(authority) == name


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "[::1]:8080",
                                  "10.1.2.3:8080", socket.gethostname()])
def test_own_names_and_address_literals_pass(host):
    assert refusal(LOOPBACK, API, "GET", headers(host=host)) is None


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io:8080",
                                  "localhost.evil.example", "127.0.0.1:80@evil.example"])
def test_other_names_are_refused_as_rebinding(host):
    message, hint = refusal(LOOPBACK, API, "GET", headers(host=host))
    assert "DNS rebinding" in message and "--allow-host" in hint
    # every family but S3, whose signature covers Host
    for r in (INVOKE, INGEST, Route(Family.OPEN, Form.NONE)):
        assert refusal(LOOPBACK, r, "GET", headers(host=host)) is not None
    assert refusal(LOOPBACK, S3, "GET", headers(host=host)) is None


def test_configured_names_and_the_bound_name_pass():
    policy = Policy.of("dayfly.lan", allow_hosts=["Dayfly.Example.COM"])
    for host in ("dayfly.lan:8080", "dayfly.example.com", "localhost"):
        assert refusal(policy, API, "GET", headers(host=host)) is None
    assert refusal(policy, API, "GET", headers(host="evil.example")) is not None
    assert refusal(Policy.of("0.0.0.0", ["*"]), API, "GET", headers(host="any.example")) is None


def test_a_second_host_header_is_checked_too():
    two = headers(host="127.0.0.1:8080") + headers(host="evil.example")
    assert refusal(LOOPBACK, API, "GET", two) is not None


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:9999",
                                    "http://localhost:8080"])
def test_foreign_origins_are_refused(origin):
    message, _ = refusal(LOOPBACK, INVOKE, "POST",
                         headers(host="127.0.0.1:8080", origin=origin))
    assert "cross-site" in message


def test_the_nodes_own_origin_and_configured_ones_pass():
    policy = Policy.of("127.0.0.1", allow_origins=["https://Dayfly.Example/"])
    own = headers(host="127.0.0.1:8080", origin="http://127.0.0.1:8080",
                  content_type="application/json")
    assert refusal(policy, API, "POST", own) is None
    proxied = headers(host="127.0.0.1:8080", origin="https://dayfly.example",
                      content_type="application/json")
    assert refusal(policy, API, "POST", proxied) is None
    assert refusal(LOOPBACK, API, "POST", proxied) is not None


def test_a_presigned_s3_request_from_another_origin_passes():
    h = headers(host="files.example:8080", origin="http://app.example")
    assert refusal(LOOPBACK, S3, "PUT", h) is None


@pytest.mark.parametrize("ctype", [None, "text/plain", "TEXT/PLAIN; charset=utf-8",
                                   "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
def test_management_posts_that_a_page_could_send_are_refused(ctype):
    h = headers(host="127.0.0.1:8080", **({"content_type": ctype} if ctype else {}))
    message, hint = refusal(LOOPBACK, API, "POST", h)
    assert "content type" in message and "application/json" in hint
    # a header no page sends without a preflight makes it safe
    assert refusal(LOOPBACK, API, "POST", h + headers(authorization="Bearer x")) is None
    assert refusal(LOOPBACK, API, "POST", h + headers(x_amz_date="20260101T000000Z")) is None
    # invokes (curl -d) and ingest webhooks keep their content types; PUT is never simple
    for r, method in ((INVOKE, "POST"), (INGEST, "POST"), (API, "PUT"), (API, "DELETE")):
        assert refusal(LOOPBACK, r, method, h) is None


@pytest.mark.parametrize("ctype", ["application/json", "application/zip",
                                   "application/x-amz-json-1.1", "text/plain, application/json"])
def test_management_posts_with_other_types_pass(ctype):
    assert refusal(LOOPBACK, API, "POST", headers(host="127.0.0.1:8080",
                                                  content_type=ctype)) is None


async def test_a_flood_of_refusals_is_logged_a_burst_at_a_time(caplog):
    async def app(scope, receive, send):
        raise AssertionError("a refused request reached the app")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    guard = OriginGuard(app, LOOPBACK)
    scope = {"type": "http", "method": "GET", "path": "/healthz", "query_string": b"",
             "headers": headers(host="evil.example")}
    with caplog.at_level(logging.WARNING, logger="dayfly.gateway"):
        for _ in range(LOG_BURST + 30):
            await guard(dict(scope), None, send)
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [403] * (LOG_BURST + 30)
    assert len([r for r in caplog.records if "refused GET /healthz" in r.message]) == LOG_BURST
