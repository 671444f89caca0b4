"""Functions that declare `buckets` use an unmodified `boto3.client("s3")` from the default
(linux) tier: their credentials reach exactly the declared buckets, through the egress relay,
and nothing else of the node; a function writing into the bucket that triggers it is stopped
at the chain depth limit and the stop shows in its dead-letter queue."""

from __future__ import annotations

import time

import botocore.exceptions
import httpx
import pytest
from bucket_helpers import deploy, invocations, lambda_config, logged, notify, s3_client, wait_for
from conftest import start_server, stop_server

DEPTH = 4
DERIVE = """
import json, os, urllib.request
from urllib.parse import unquote_plus
import boto3

s3 = boto3.client("s3")

def attempt(call):
    try:
        call()
        return "allowed"
    except Exception as exc:
        return str(exc)

def handler(event, context):
    rec = event["Records"][0]
    bucket, key = rec["s3"]["bucket"]["name"], unquote_plus(rec["s3"]["object"]["key"])
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket="outgoing", Key=key + ".upper", Body=body.upper())
    out = {
        "write_incoming": attempt(lambda: s3.put_object(Bucket="incoming", Key="x", Body=b"x")),
        "read_private": attempt(lambda: s3.get_object(Bucket="private", Key="secret.txt")),
        "read_outgoing": attempt(lambda: s3.get_object(Bucket="outgoing", Key=key + ".upper")),
        "create_bucket": attempt(lambda: s3.create_bucket(Bucket="newbucket")),
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
        "key": [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]],
        "tier": os.path.exists("/opt/dayfly"),
    }
    try:  # the node's other APIs are not reachable from a function
        urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + "/2015-03-31/functions/")
        out["lambda_api"] = "reachable"
    except Exception as exc:
        out["lambda_api"] = str(exc)
    print("RESULT " + json.dumps(out))
"""
LOOP = """
import boto3
from urllib.parse import unquote_plus

s3 = boto3.client("s3")

def handler(event, context):
    key = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
    s3.put_object(Bucket="loopy", Key=key + "+", Body=b"again")
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("access") / "data",
                          "--max-chain-depth", str(DEPTH))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def s3(srv):
    client = s3_client(srv)
    for b in ("incoming", "outgoing", "private", "loopy"):
        client.create_bucket(Bucket=b)
    client.put_object(Bucket="private", Key="secret.txt", Body=b"not yours")
    return client


def test_scoped_credentials_with_plain_boto3_in_the_linux_tier(srv, s3):
    fn = deploy(srv, "derive", {"handler.py": DERIVE, "requirements.txt": "boto3\n",
                                "dayfly.toml": 'buckets = ["incoming:read", "outgoing:write"]\n'
                                               "timeout = 30\n"})
    assert fn["Dayfly"]["Isolation"] == "linux" and fn["Dayfly"]["Buckets"] == [
        "incoming:read", "outgoing:write"]
    notify(s3, "incoming", lambda_config("derive", ["s3:ObjectCreated:*"]))
    s3.put_object(Bucket="incoming", Key="notes/hello world.txt", Body=b"hello")
    (out,) = wait_for(lambda: logged(srv, "derive", "RESULT"), 60) or [None]
    assert out is not None, invocations(srv, "derive")
    assert out["tier"] is True  # inside the linux sandbox's own root
    derived = s3.get_object(Bucket="outgoing", Key="notes/hello world.txt.upper")
    assert derived["Body"].read() == b"HELLO"
    assert "AccessDenied" in out["write_incoming"] and "may not write bucket incoming" in \
        out["write_incoming"]
    assert "AccessDenied" in out["read_private"]
    assert "AccessDenied" in out["read_outgoing"]  # write-only
    assert "AccessDenied" in out["create_bucket"]
    assert out["buckets"] == ["incoming", "outgoing"]  # ListBuckets shows the scope only
    assert "403" in out["lambda_api"]
    # the derived key is no master key from the host either, and dies with the function
    key_id, secret = out["key"]
    assert key_id.startswith("DFN")
    scoped = s3_client(srv, key_id, secret)
    assert scoped.get_object(Bucket="incoming", Key="notes/hello world.txt")["Body"].read() == \
        b"hello"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        scoped.delete_object(Bucket="private", Key="secret.txt")
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        scoped.copy_object(Bucket="outgoing", Key="stolen", CopySource="private/secret.txt")
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    srv.lambda_client().delete_function(FunctionName="derive")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        scoped.list_objects_v2(Bucket="incoming")
    assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert (srv.data_dir / "master.key").stat().st_mode & 0o777 == 0o600


def test_a_function_writing_into_its_own_trigger_bucket_is_stopped(srv, s3):
    deploy(srv, "looper", {"handler.py": LOOP, "requirements.txt": "boto3\n",
                           "dayfly.toml": 'buckets = ["loopy:readwrite"]\ntimeout = 30\n'})
    notify(s3, "loopy", lambda_config("looper", ["s3:ObjectCreated:*"]))
    s3.put_object(Bucket="loopy", Key="start", Body=b"go")
    dead = wait_for(lambda: httpx.get(f"{srv.url}/dayfly/v1/functions/looper/dlq")
                    .json()["dead_letters"], 60)
    assert dead, invocations(srv, "looper")
    assert "recursive invocation stopped" in dead[0]["error"]
    assert dead[0]["chain"] == ["looper"] * DEPTH and dead[0]["trigger"] == "s3"
    time.sleep(1.5)  # records are flushed in batches; and nothing more runs
    runs = invocations(srv, "looper")
    assert len(runs) == DEPTH and all(r["status"] == "success" for r in runs)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="loopy")["Contents"]]
    assert keys == ["start" + "+" * n for n in range(DEPTH + 1)]
