"""Bucket bindings end to end, in the default (linux) tier and the process tier: a function
reading and writing its declared buckets through `context.buckets` (no SDK, no HTTP) triggers
what a PutObject triggers, with the same event, and a function writing into the bucket that
triggers it is stopped at the chain depth limit exactly as over S3."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
from bucket_helpers import (
    ECHO,
    deploy,
    invocations,
    lambda_config,
    logged,
    notify,
    s3_client,
    wait_for,
)
from conftest import ALLOW_WEAK, start_server, stop_server

DEPTH = 3
UPPER = """
import json
from urllib.parse import unquote_plus

def handler(event, context):
    rec = event["Records"][0]
    bucket, key = rec["s3"]["bucket"]["name"], unquote_plus(rec["s3"]["object"]["key"])
    with context.buckets.open(bucket, key) as f:
        body = f.read()
    out = context.buckets.put("bound-out", key + ".upper", body.upper(),
                              content_type="text/plain", metadata={"from": key})
    print("RESULT " + json.dumps(out))
"""
LOOP = """
from urllib.parse import unquote_plus

def handler(event, context):
    key = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
    with context.buckets.writer("bound-loop", key + "+") as w:
        w.write(b"again")
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("binding") / "data",
                          "--max-chain-depth", str(DEPTH), *ALLOW_WEAK)  # both tiers are tried
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def s3(srv):
    client = s3_client(srv)
    for b in ("bound-in", "bound-out", "bound-loop"):
        client.create_bucket(Bucket=b)
    return client


@pytest.mark.parametrize("tier", ["linux", "process"])
def test_a_binding_put_fires_the_bucket_trigger_like_a_put_object(srv, s3, tier):
    upper = deploy(srv, f"upper-{tier}", {
        "handler.py": UPPER, "dayfly.toml": f'isolation = "{tier}"\n'
        'buckets = ["bound-in:read", "bound-out:write"]\ntimeout = 30\n'})
    assert upper["Dayfly"]["Isolation"] == tier
    deploy(srv, f"echo-{tier}", {"handler.py": ECHO})
    notify(s3, "bound-in", lambda_config(f"upper-{tier}", ["s3:ObjectCreated:*"]))
    notify(s3, "bound-out", lambda_config(f"echo-{tier}", ["s3:ObjectCreated:*"]))
    s3.put_object(Bucket="bound-in", Key=f"{tier}/hello.txt", Body=b"hello binding")
    (out,) = wait_for(lambda: logged(srv, f"upper-{tier}", "RESULT"), 60) or [None]
    assert out is not None, invocations(srv, f"upper-{tier}")
    md5 = hashlib.md5(b"HELLO BINDING").hexdigest()
    assert out == {"etag": md5, "size": 13}
    stored = s3.get_object(Bucket="bound-out", Key=f"{tier}/hello.txt.upper")
    assert stored["Body"].read() == b"HELLO BINDING" and stored["ETag"] == f'"{md5}"'
    assert stored["ContentType"] == "text/plain"
    assert stored["Metadata"] == {"from": f"{tier}/hello.txt"}
    (event,) = wait_for(lambda: logged(srv, f"echo-{tier}"), 60) or [None]
    assert event is not None, invocations(srv, f"echo-{tier}")
    rec = event["Records"][0]
    assert rec["eventName"] == "ObjectCreated:Put"
    assert rec["s3"]["object"]["key"] == f"{tier}/hello.txt.upper"
    assert rec["s3"]["object"]["size"] == 13 and rec["s3"]["object"]["eTag"] == md5
    # the writer is the function's own key, as for its S3 requests (loop detection uses it)
    assert rec["userIdentity"]["principalId"].startswith("DFN")


def test_a_function_writing_into_its_own_trigger_bucket_through_the_binding_is_stopped(srv, s3):
    deploy(srv, "bound-looper", {"handler.py": LOOP, "dayfly.toml":
                                 'buckets = ["bound-loop:readwrite"]\ntimeout = 30\n'})
    notify(s3, "bound-loop", lambda_config("bound-looper", ["s3:ObjectCreated:*"]))
    s3.put_object(Bucket="bound-loop", Key="start", Body=b"go")
    dead = wait_for(lambda: httpx.get(f"{srv.url}/dayfly/v1/functions/bound-looper/dlq")
                    .json()["dead_letters"], 60)
    assert dead, invocations(srv, "bound-looper")
    assert "recursive invocation stopped" in dead[0]["error"]
    assert dead[0]["chain"] == ["bound-looper"] * DEPTH and dead[0]["trigger"] == "s3"
    time.sleep(1.5)  # records are flushed in batches; and nothing more runs
    runs = invocations(srv, "bound-looper")
    assert len(runs) == DEPTH and all(r["status"] == "success" for r in runs)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bound-loop")["Contents"]]
    assert keys == ["start" + "+" * n for n in range(DEPTH + 1)]
