"""External stores: sources with bearer tokens, MinIO- and AWS-shaped webhook bodies routed
through the bucket triggers of (source, bucket), and clear 4xx errors for bad input."""

from __future__ import annotations

import time

import httpx
import pytest
from bucket_helpers import ECHO, deploy, logged, wait_for
from conftest import ALLOW_WEAK

SERVER_ARGS = ALLOW_WEAK  # the sink function records to a host file: process tier

SOURCES = "/dayfly/v1/ingest/sources"

MINIO = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "media/clips/a b.mp4",
    "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
        "eventTime": "2026-11-28T01:00:00.000Z", "eventName": "s3:ObjectCreated:Put",
        "userIdentity": {"principalId": "minioadmin"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
               "bucket": {"name": "media", "ownerIdentity": {"principalId": "minioadmin"},
                          "arn": "arn:aws:s3:::media"},
               "object": {"key": "clips%2Fa+b.mp4", "size": 42, "eTag": "abc",
                          "sequencer": "17F2A1B2C3D4E5F6"}}}],
}


@pytest.fixture(scope="module")
def api(server):
    deploy(server, "sink", {"handler.py": ECHO, "dayfly.toml": 'isolation = "process"\n'})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def minio(api):
    r = api.post(SOURCES, json={"name": "minio", "description": "the lab's MinIO"})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["token"].startswith("dfi_") and out["url"] == "/dayfly/v1/ingest/s3/minio"
    r = api.post("/dayfly/v1/bucket-triggers", json={
        "function": "sink", "bucket": "media", "source": "minio", "events": "created",
        "prefix": "clips/", "id": "clips"})
    assert r.status_code == 201, r.text
    return out


def post(api, token: str, body, source: str = "minio") -> httpx.Response:
    return api.post(f"/dayfly/v1/ingest/s3/{source}", json=body,
                    headers={"Authorization": f"Bearer {token}"})


def received(server, n: int) -> list[dict]:
    return wait_for(lambda: (lambda got: got if len(got) >= n else None)(
        [e["Records"][0] for e in logged(server, "sink")])) or []


def test_sources_hand_out_the_token_once(api, minio):
    listed = api.get(SOURCES).json()["sources"]
    assert listed == [{"name": "minio", "description": "the lab's MinIO",
                       "created": listed[0]["created"]}]
    r = api.post(SOURCES, json={"name": "minio"})
    assert r.status_code == 409 and r.json()["__type"] == "ResourceConflictException"
    for name in ("local", "Bad Name", "", None):
        r = api.post(SOURCES, json={"name": name})
        assert r.status_code == 400 and "source name" in r.json()["message"]


def test_minio_webhook_is_routed(server, api, minio):
    r = post(api, minio["token"], MINIO)
    assert r.status_code == 200 and r.json() == {"records": 1, "routed": 1, "queued": 1}
    (rec,) = received(server, 1)
    assert rec["eventName"] == "ObjectCreated:Put"  # the s3: prefix dropped, as AWS sends it
    assert rec["s3"]["configurationId"] == "clips"
    assert rec["s3"]["object"]["key"] == "clips%2Fa+b.mp4" and rec["s3"]["object"]["size"] == 42
    inv = httpx.get(f"{server.url}/dayfly/v1/functions/sink/invocations").json()["invocations"]
    assert inv[0]["trigger"] == "s3"


def test_aws_shape_minimal_form_and_filters(server, api, minio):
    before = len(received(server, 0))
    aws = {"Records": [
        {**MINIO["Records"][0], "eventName": "ObjectCreated:Copy",
         "s3": {**MINIO["Records"][0]["s3"], "object": {"key": "clips/b.mp4"}}},
        {**MINIO["Records"][0], "eventName": "ObjectRemoved:Delete"},  # not subscribed
        {**MINIO["Records"][0], "s3": {**MINIO["Records"][0]["s3"],
                                       "object": {"key": "other/c.mp4"}}},  # prefix
        {**MINIO["Records"][0], "eventName": "s3:ObjectAccessed:Get"},  # never routed
        {**MINIO["Records"][0], "s3": {**MINIO["Records"][0]["s3"],
                                       "bucket": {"name": "unconfigured"}}},
    ]}
    r = post(api, minio["token"], aws)
    assert r.json() == {"records": 5, "routed": 4, "queued": 1}
    r = post(api, minio["token"], {"EventName": "s3:ObjectCreated:Put",
                                   "Key": "media/clips/c.mp4"})
    assert r.json() == {"records": 1, "routed": 1, "queued": 1}
    r = api.post("/dayfly/v1/ingest/s3/minio", json={"Event": "s3:TestEvent"},
                 headers={"Authorization": minio["token"]})  # older MinIO: no scheme
    assert r.status_code == 200, r.text
    r = post(api, minio["token"], {"Service": "Amazon S3", "Event": "s3:TestEvent"})
    assert r.status_code == 200 and r.json()["records"] == 0
    got = received(server, before + 2)[before:]
    assert sorted(r["s3"]["object"]["key"] for r in got) == ["clips/b.mp4", "clips/c.mp4"]
    time.sleep(0.5)
    assert len(received(server, 0)) == before + 2


def test_bad_requests(api, minio):
    token = minio["token"]
    r = api.post("/dayfly/v1/ingest/s3/minio", json=MINIO)
    assert r.status_code == 401 and r.json()["__type"] == "UnauthorizedException"
    assert post(api, "dfi_wrong", MINIO).status_code == 401
    assert post(api, token, MINIO, source="elsewhere").status_code == 401
    cases = [
        ({"Records": {}}, "Records must be a list"),
        ({"Records": [{"eventName": "ObjectCreated:Put"}]}, "Records[0].s3.bucket.name"),
        ({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]},
         "Records[0].s3.object.key"),
        ({"Records": [{"s3": {}}]}, "Records[0].eventName"),
        ({"EventName": "s3:ObjectCreated:Put", "Key": "nobucketslash"}, "EventName and Key"),
        ({"hello": "world"}, "expected Records"),
        ([1, 2], "JSON object"),
    ]
    for body, words in cases:
        r = post(api, token, body)
        assert r.status_code == 400 and words in r.json()["message"], (body, r.text)
    r = api.post("/dayfly/v1/ingest/s3/minio", content=b"{not json",
                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and r.json()["__type"] == "InvalidRequestContentException"
    r = api.post("/dayfly/v1/bucket-triggers", json={"function": "sink", "bucket": "media",
                                                     "source": "nosuch"})
    assert r.status_code == 404 and "dayfly ingest add-source nosuch" in r.json()["hint"]
    r = api.post("/dayfly/v1/bucket-triggers", json={"function": "nosuchfn", "bucket": "media",
                                                     "source": "minio"})
    assert r.status_code == 404
    r = api.post("/dayfly/v1/bucket-triggers", json={"function": "sink", "bucket": "media",
                                                     "source": "minio", "events": "s3:Nope"})
    assert r.status_code == 400 and "not supported" in r.json()["message"]


def test_removing_a_source_revokes_it_and_its_triggers(api):
    out = api.post(SOURCES, json={"name": "tmpsrc"}).json()
    api.post("/dayfly/v1/bucket-triggers", json={"function": "sink", "bucket": "x",
                                                 "source": "tmpsrc"}).raise_for_status()
    assert api.delete(f"{SOURCES}/tmpsrc").status_code == 204
    assert post(api, out["token"], MINIO, source="tmpsrc").status_code == 401
    assert api.get("/dayfly/v1/bucket-triggers", params={"source": "tmpsrc"}).json()[
        "triggers"] == []
    assert api.delete(f"{SOURCES}/tmpsrc").status_code == 404
