"""notify end to end: webhooks a real receiver verifies with the documented signature scheme,
CloudEvents the SDK parses, email through a real SMTP server (aiosmtpd), retries (its own and
the platform's), a rate limit, and an egress allow-list of exactly its destinations."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time

import httpx
import pytest
from builtin_helpers import (
    Receiver,
    add_bucket_trigger,
    deploy_builtin,
    deployed,
    invocations,
    invoke,
    s3_client,
    s3_event,
    wait_for,
)
from conftest import free_port

SECRET = "whsec-test-0123456789"


def verify(headers: dict[str, str], body: bytes, secret: str, tolerance: float = 300) -> bool:
    """What a receiver does (docs/builtins.md): recompute the HMAC over "<t>." + body."""
    parts = dict(p.split("=", 1) for p in headers["x-dayfly-signature"].split(","))
    t = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - t) <= tolerance


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hook(receiver):
    receiver.requests.clear()
    receiver.statuses.clear()
    return receiver


@pytest.fixture(scope="module")
def secret(server):
    r = httpx.put(f"{server.url}/dayfly/v1/secrets/HOOK_SECRET", json={"value": SECRET})
    assert r.status_code == 204
    return "HOOK_SECRET"


def test_bucket_change_becomes_a_signed_webhook(server, hook, secret):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="inbox")
    out = deployed(server, "notify", "inbox-hook", {
        "webhook": hook.url, "signing_secret": secret,
        "template": "new file ${key} (${size} bytes) in ${bucket}"})
    dayfly = out["function"]["Dayfly"]
    assert dayfly["Network"] == [f"127.0.0.1:{hook.port}"]  # its only reachable destination
    assert dayfly["Secrets"] == ["HOOK_SECRET"] and dayfly["Buckets"] == []
    add_bucket_trigger(server, "inbox-hook", "inbox")
    s3.put_object(Bucket="inbox", Key="report 1.csv", Body=b"a,b\n1,2\n")
    assert wait_for(lambda: hook.requests)
    headers, body, _ = hook.requests[0]
    assert verify(headers, body, SECRET)
    assert not verify(headers, body + b" ", SECRET) and not verify(headers, body, "wrong")
    doc = json.loads(body)
    assert doc["message"] == "new file report 1.csv (8 bytes) in inbox"
    assert doc["source"] == "s3" and doc["event"] == "ObjectCreated:Put"
    assert doc["record"]["s3"]["bucket"]["name"] == "inbox"
    assert headers["x-dayfly-event-id"] == doc["id"] and headers["content-type"] == \
        "application/json"


def test_cloudevents_structured_and_binary_parse_with_the_sdk(server, hook):
    from cloudevents.core.bindings import http as ce_http
    from cloudevents.core.formats.json import JSONFormat

    deployed(server, "notify", "ce", {"targets": [
        {"type": "webhook", "name": "structured", "url": hook.url, "format": "cloudevents"},
        {"type": "webhook", "name": "binary", "url": hook.url + "?mode=binary",
         "format": "cloudevents-binary"}]})
    err, out = invoke(server, "ce", s3_event("photos", "dir/é x.jpg", 12))
    assert err is None and out["sent"] == 2, out
    events = [ce_http.from_http(ce_http.HTTPMessage(headers=h, body=b), JSONFormat())
              for h, b, _ in hook.requests]
    assert {e.get_id() for e in events} == {out["ids"][0]}
    for e in events:
        assert e.get_type() == "dayfly.s3.ObjectCreated:Put"
        assert e.get_source() == "/dayfly/buckets/photos"
        assert e.get_subject() == "photos/dir/é x.jpg"
        assert e.get_data()["record"]["s3"]["object"]["size"] == 12
    assert hook.requests[0][0]["content-type"].startswith("application/cloudevents+json")
    assert hook.requests[1][0]["ce-specversion"] == "1.0"


def test_table_changes_render_the_template(server, hook, tmp_path):
    deployed(server, "notify", "table-hook", {
        "webhook": hook.url, "template": "${event} ${table}#${keys.id}: ${old.name} -> ${new.name}",
        "events": ["INSERT", "MODIFY"]})
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    lam = server.lambda_client()
    lam.create_event_source_mapping(
        FunctionName="table-hook", StartingPosition="LATEST",
        EventSourceArn=f"arn:dayfly:table:sqlite://{db}?view=NEW_AND_OLD_IMAGES#items")
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO items VALUES (1, 'pen')")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE items SET name = 'ink' WHERE id = 1")
        c.execute("DELETE FROM items WHERE id = 1")  # filtered out by `events`
    assert wait_for(lambda: len(hook.requests) >= 2, 60)
    time.sleep(0.5)
    messages = [json.loads(b)["message"] for _, b, _ in hook.requests]
    # a name the record does not have (no old image on INSERT) stays as written
    assert messages == ["INSERT items#1: ${old.name} -> pen", "MODIFY items#1: pen -> ink"]


def test_destination_records_and_direct_calls(server, hook):
    deployed(server, "notify", "any-hook", {"webhook": hook.url,
                                            "template": "${source}/${event}: ${subject}"})
    record = {"version": "1.0", "timestamp": "2024-05-01T10:00:00.000Z",
              "requestContext": {"requestId": "r-1", "condition": "RetriesExhausted",
                                 "functionArn": "arn:aws:lambda:us-east-1:1:function:billing",
                                 "approximateInvokeCount": 3},
              "requestPayload": {"order": 7}, "responsePayload": {"errorMessage": "boom"}}
    assert invoke(server, "any-hook", record)[0] is None
    assert invoke(server, "any-hook", {"event": "deploy", "subject": "api v2",
                                       "url": "http://127.0.0.1:1/elsewhere"})[0] is None
    messages = [json.loads(b)["message"] for _, b, _ in hook.requests]
    # a direct call cannot redirect a notification: the targets are fixed at deploy
    assert messages == ["destination/RetriesExhausted: billing", "direct/deploy: api v2"]


def test_transient_failures_are_retried_with_backoff(server, hook):
    deployed(server, "notify", "flaky", {"webhook": hook.url, "backoff": 0.2})
    hook.statuses[:] = [500, 503]
    err, out = invoke(server, "flaky", {"event": "x"})
    assert err is None, out
    times = [t for _, _, t in hook.requests]
    assert len(times) == 3 and times[1] - times[0] >= 0.14 and times[2] - times[1] >= 0.28
    assert len({h["x-dayfly-event-id"] for h, _, _ in hook.requests}) == 1


def test_a_permanent_failure_fails_the_invocation_at_once(server, hook):
    deployed(server, "notify", "rejected", {"webhook": hook.url, "backoff": 0.1})
    hook.statuses[:] = [410]
    err, out = invoke(server, "rejected", {"event": "x"})
    assert err == "Unhandled" and out["errorType"] == "NotifyError", out
    assert "HTTP 410" in out["errorMessage"] and len(hook.requests) == 1


def test_a_failed_send_is_retried_by_the_platform(server, hook):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="retried")
    deployed(server, "notify", "durable", {"webhook": hook.url, "retries": 0})
    add_bucket_trigger(server, "durable", "retried")
    hook.statuses[:] = [500, 500]
    s3.put_object(Bucket="retried", Key="k", Body=b"x")
    assert wait_for(lambda: len(hook.requests) >= 3, 30), hook.requests
    statuses = [i["status"] for i in reversed(invocations(server, "durable"))]
    assert statuses == ["error", "error", "success"]
    assert len({h["x-dayfly-event-id"] for h, _, _ in hook.requests}) == 1  # dedupable


def test_rate_limit_spaces_the_sends(server, hook):
    out = deployed(server, "notify", "limited", {"webhook": hook.url, "rate_limit": 4})
    assert out["function"]["Dayfly"]["MaxInstances"] == 1
    batch = {"Records": [{"event": "tick", "n": i} for i in range(8)]}
    err, res = invoke(server, "limited", batch)
    assert err is None and res["sent"] == 8, res
    times = [t for _, _, t in hook.requests]
    assert times[-1] - times[0] >= 0.9  # 4 at once (the burst), then 4 more at 4/s


def test_email_through_smtp(server):
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.mail: list = []

        async def handle_DATA(self, server, session, envelope):
            self.mail.append(envelope)
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        out = deployed(server, "notify", "mailer", {
            "smtp_host": "127.0.0.1", "smtp_port": port, "email_from": "dayfly@example.com",
            "email_to": ["ops@example.com", "dev@example.com"],
            "title": "[dayfly] ${event}: ${subject}", "template": "Object ${key} arrived."})
        assert out["function"]["Dayfly"]["Network"] == [f"127.0.0.1:{port}"]
        err, res = invoke(server, "mailer", s3_event("uploads", "a.txt", 1))
        assert err is None, res
        (env,) = inbox.mail
        assert env.mail_from == "dayfly@example.com"
        assert env.rcpt_tos == ["ops@example.com", "dev@example.com"]
        text = env.content.decode()
        assert "Subject: [dayfly] ObjectCreated:Put: uploads/a.txt" in text
        assert "Object a.txt arrived." in text and f"X-Dayfly-Event-Id: {res['ids'][0]}" in text
    finally:
        smtp.stop()


@pytest.mark.parametrize(("config", "words"), [
    ({}, "needs 1-20 destinations"),
    ({"webhook": "ftp://example.com/x"}, "must be an http:// or https:// URL"),
    ({"webhook": "http://user:pw@example.com/"}, "must not carry credentials"),
    ({"webhook": "http://example.com/", "signing_secret": "NOT_SET_ANYWHERE"},
     "secret(s) NOT_SET_ANYWHERE not set"),
    ({"targets": [{"type": "webhook", "url": "http://x.example/", "headers": {"Host": "y"}}]},
     "may not set host"),
    ({"targets": [{"type": "pager"}]}, "type = \"webhook\" or \"email\""),
    ({"smtp_host": "mail.example", "email_from": "me", "email_to": "you@example.com"},
     "'me' is not an email address"),
    ({"webhook": "http://example.com/", "rate_limit": 0}, "'rate_limit' must be a number"),
], ids=["no-targets", "scheme", "credentials", "unset-secret", "reserved-header", "type",
        "address", "rate"])
def test_configuration_is_validated_at_deploy(server, config, words):
    out = deploy_builtin(server, "notify", "bad-notify", config)
    assert "error" in out and words in out["error"]["message"], out
