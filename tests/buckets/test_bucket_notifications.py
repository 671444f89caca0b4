"""Bucket notifications through boto3: the configuration round trip and its refusals, and object
changes delivered to functions as AWS's S3 event records, filtered by event type and key."""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import botocore.exceptions
import httpx
import pytest
from bucket_helpers import (
    ECHO,
    deploy,
    lambda_config,
    logged,
    new_bucket,
    notify,
    s3_client,
    wait_for,
)
from conftest import ALLOW_WEAK

SERVER_ARGS = ALLOW_WEAK  # the echo functions run on the process tier

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture(scope="module")
def echo(server):
    deploy(server, "echo", {"handler.py": ECHO, "dayfly.toml": 'isolation = "process"\n'})
    return "echo"


def events_for(server, bucket: str, n: int, function: str = "echo") -> list[dict]:
    """The records `function` received for `bucket`, once there are at least n."""
    def got():
        recs = [e["Records"][0] for e in logged(server, function)
                if e["Records"][0]["s3"]["bucket"]["name"] == bucket]
        return recs if len(recs) >= n else None
    return wait_for(got) or []


def test_configuration_round_trip(s3, echo):
    bucket = new_bucket(s3)
    assert s3.get_bucket_notification_configuration(Bucket=bucket).get(
        "LambdaFunctionConfigurations", []) == []
    notify(s3, bucket,
           lambda_config(ARN + "echo", ["s3:ObjectCreated:*"], prefix="img/", suffix=".jpg",
                         config_id="thumbs"),
           lambda_config("echo", ["s3:ObjectRemoved:Delete", "s3:ObjectCreated:Copy"]))
    got = s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
    assert got[0] == {"Id": "thumbs", "LambdaFunctionArn": ARN + "echo",
                      "Events": ["s3:ObjectCreated:*"],
                      "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "img/"},
                                                         {"Name": "Suffix", "Value": ".jpg"}]}}}
    assert got[1]["Id"] and got[1]["LambdaFunctionArn"] == ARN + "echo"  # a name becomes an ARN
    assert got[1]["Events"] == ["s3:ObjectRemoved:Delete", "s3:ObjectCreated:Copy"]
    # the same configurations through dayfly's API
    listed = httpx.get(f"{s3.meta.endpoint_url}/dayfly/v1/bucket-triggers",
                       params={"bucket": bucket}).json()["triggers"]
    assert [t["id"] for t in listed] == ["thumbs", got[1]["Id"]]
    assert listed[0]["source"] == "local" and listed[0]["prefix"] == "img/"
    notify(s3, bucket)  # an empty configuration removes them all
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(
        Bucket=bucket)


def _error(call) -> dict:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    return info.value.response["Error"]


def test_refusals(s3, echo):
    bucket = new_bucket(s3)
    err = _error(lambda: notify(s3, bucket, lambda_config(ARN + "nosuchfn",
                                                          ["s3:ObjectCreated:*"])))
    assert err["Code"] == "InvalidArgument"
    assert err["Message"] == "Unable to validate the following destination configurations"
    assert err["ArgumentName1"] == ARN + "nosuchfn"
    err = _error(lambda: notify(s3, bucket, lambda_config("echo", ["s3:ObjectRestore:*"])))
    assert err["Code"] == "InvalidArgument" and "not supported" in err["Message"]
    err = _error(lambda: s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [
            {"TopicArn": "arn:aws:sns:us-east-1:000000000000:t",
             "Events": ["s3:ObjectCreated:*"]}]}))
    assert err["Code"] == "InvalidArgument" and "TopicConfiguration is not supported" in \
        err["Message"]
    err = _error(lambda: notify(s3, "no-such-bucket-here", lambda_config("echo",
                                                                         ["s3:ObjectCreated:*"])))
    assert err["Code"] == "NoSuchBucket"
    # a body that is not XML: replace what boto3 serialized before it is signed
    def garble(request, **kw):
        request.data = b"<NotificationConfiguration><CloudFunctionConfiguration>"
        request.headers["Content-Length"] = str(len(request.data))
    s3.meta.events.register("before-sign.s3.PutBucketNotificationConfiguration", garble)
    try:
        err = _error(lambda: notify(s3, bucket, lambda_config("echo", ["s3:ObjectCreated:*"])))
    finally:
        s3.meta.events.unregister("before-sign.s3.PutBucketNotificationConfiguration", garble)
    assert err["Code"] == "MalformedXML"
    # nothing was stored by any of these
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(
        Bucket=bucket)


def test_put_object_delivers_the_aws_record(server, s3, echo):
    bucket = new_bucket(s3, "photos")
    notify(s3, bucket, lambda_config("echo", ["s3:ObjectCreated:Put"], config_id="on-put"))
    before = time.time()
    s3.put_object(Bucket=bucket, Key="dir/a b+c.jpg", Body=b"hello world")
    (rec,) = events_for(server, bucket, 1)
    keys = logged(server, "echo", "KEY")
    assert keys and all(a == b and a for a, b in keys)  # the event and the context agree
    assert rec["eventVersion"] == "2.1" and rec["eventSource"] == "aws:s3"
    assert rec["eventName"] == "ObjectCreated:Put" and rec["awsRegion"] == "us-east-1"
    stamp = calendar.timegm(time.strptime(rec["eventTime"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert rec["eventTime"].endswith("Z") and abs(stamp - before) < 60
    assert rec["s3"]["configurationId"] == "on-put"
    assert rec["s3"]["bucket"]["name"] == bucket
    assert rec["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    obj = rec["s3"]["object"]
    assert obj["key"] == "dir/a+b%2Bc.jpg"  # URL-encoded as S3 does
    assert obj["size"] == 11 and obj["eTag"] == hashlib.md5(b"hello world").hexdigest()
    assert len(obj["sequencer"]) >= 16 and int(obj["sequencer"], 16)
    inv = [i for i in httpx.get(f"{server.url}/dayfly/v1/functions/echo/invocations").json()[
        "invocations"] if bucket in i["logs"]]
    assert inv[0]["trigger"] == "s3" and inv[0]["status"] == "success"


def test_filters_and_event_types(server, s3, echo):
    bucket = new_bucket(s3)
    notify(s3, bucket,
           lambda_config("echo", ["s3:ObjectCreated:*"], prefix="img/", suffix=".jpg",
                         config_id="jpg"),
           lambda_config("echo", ["s3:ObjectRemoved:*"], prefix="img/", config_id="gone"),
           lambda_config("echo", ["s3:ObjectCreated:Copy"], config_id="copies"))
    for key in ("img/a.jpg", "img/b.png", "doc/c.jpg", "img/x.jpg.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.copy_object(Bucket=bucket, Key="img/copy.jpg", CopySource=f"{bucket}/img/a.jpg")
    mp = s3.create_multipart_upload(Bucket=bucket, Key="img/multi.jpg")
    part = s3.upload_part(Bucket=bucket, Key="img/multi.jpg", UploadId=mp["UploadId"],
                          PartNumber=1, Body=b"m" * 100)
    s3.complete_multipart_upload(Bucket=bucket, Key="img/multi.jpg", UploadId=mp["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": part["ETag"]}]})
    s3.delete_object(Bucket=bucket, Key="img/b.png")
    s3.delete_object(Bucket=bucket, Key="doc/c.jpg")  # outside the removal prefix
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "img/a.jpg"},
                                                         {"Key": "img/never-there"}]})
    recs = events_for(server, bucket, 6)
    time.sleep(1)  # and nothing else arrives
    recs = events_for(server, bucket, 6)
    got = sorted((r["s3"]["configurationId"], r["eventName"], r["s3"]["object"]["key"])
                 for r in recs)
    assert got == sorted([
        ("jpg", "ObjectCreated:Put", "img/a.jpg"),
        ("jpg", "ObjectCreated:Copy", "img/copy.jpg"),
        ("copies", "ObjectCreated:Copy", "img/copy.jpg"),
        ("jpg", "ObjectCreated:CompleteMultipartUpload", "img/multi.jpg"),
        ("gone", "ObjectRemoved:Delete", "img/b.png"),
        ("gone", "ObjectRemoved:Delete", "img/a.jpg"),  # none for a key never there, as S3
    ])
    removed = [r for r in recs if r["eventName"].startswith("ObjectRemoved")]
    assert all("size" not in r["s3"]["object"] for r in removed)


def test_deleting_a_bucket_drops_its_configuration(s3, echo):
    bucket = new_bucket(s3)
    notify(s3, bucket, lambda_config("echo", ["s3:ObjectCreated:*"]))
    s3.delete_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=bucket)
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(
        Bucket=bucket)


def test_configurations_naming_a_deleted_function_are_skipped(server, s3):
    deploy(server, "doomed", {"handler.py": ECHO, "dayfly.toml": 'isolation = "process"\n'})
    bucket = new_bucket(s3)
    notify(s3, bucket, lambda_config("doomed", ["s3:ObjectCreated:*"], config_id="dead-end"))
    server.lambda_client().delete_function(FunctionName="doomed")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")  # accepted: the write is not refused
    assert wait_for(lambda: "names function doomed, which does not exist" in server.log(), 5)


def test_cli_shortcut(server, s3, echo):
    bucket = new_bucket(s3)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dayfly.cli.main", *args, "--endpoint",
                               server.url], capture_output=True, text=True, timeout=60)
    out = cli("trigger", "add", "echo", "--bucket", bucket, "--events", "removed",
              "--prefix", "logs/", "--suffix", ".txt")
    assert out.returncode == 0, out.stderr
    cfg = s3.get_bucket_notification_configuration(Bucket=bucket)[
        "LambdaFunctionConfigurations"]
    assert cfg[0]["Events"] == ["s3:ObjectRemoved:*"]
    assert cfg[0]["Filter"]["Key"]["FilterRules"] == [{"Name": "Prefix", "Value": "logs/"},
                                                      {"Name": "Suffix", "Value": ".txt"}]
    listed = cli("trigger", "ls", "echo", "--json")
    assert listed.returncode == 0, listed.stderr
    (mine,) = [t for t in json.loads(listed.stdout)["BucketTriggers"] if t["bucket"] == bucket]
    assert mine["id"] == cfg[0]["Id"] and mine["source"] == "local"
    table = cli("trigger", "ls")
    assert table.returncode == 0 and cfg[0]["Id"] in table.stdout
    bad = cli("trigger", "add", "echo", "--bucket", "no-such-bucket-x")
    assert bad.returncode == 1 and "No bucket no-such-bucket-x" in bad.stderr
    gone = cli("trigger", "rm", cfg[0]["Id"])
    assert gone.returncode == 0, gone.stderr
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(
        Bucket=bucket)


def test_aws_cli_round_trip(server, s3, echo, tmp_path):
    exe = shutil.which("aws")
    if exe is None:
        pytest.skip("the aws CLI is not installed (pip install awscli)")
    bucket = new_bucket(s3)
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
               AWS_CONFIG_FILE=str(config), AWS_EC2_METADATA_DISABLED="true")
    doc = {"LambdaFunctionConfigurations": [{
        "Id": "from-cli", "LambdaFunctionArn": ARN + "echo", "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".csv"}]}}}]}

    def aws(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, "--endpoint-url", server.url, "s3api", *args], env=env,
                              capture_output=True, text=True, timeout=120)
    put = aws("put-bucket-notification-configuration", "--bucket", bucket,
              "--notification-configuration", json.dumps(doc))
    assert put.returncode == 0, put.stderr
    got = aws("get-bucket-notification-configuration", "--bucket", bucket)
    assert got.returncode == 0 and json.loads(got.stdout) == {
        "LambdaFunctionConfigurations": [{**doc["LambdaFunctionConfigurations"][0], "Filter": {
            "Key": {"FilterRules": [{"Name": "Suffix", "Value": ".csv"}]}}}]}
    doc["LambdaFunctionConfigurations"][0]["LambdaFunctionArn"] = ARN + "missing"
    bad = aws("put-bucket-notification-configuration", "--bucket", bucket,
              "--notification-configuration", json.dumps(doc))
    assert bad.returncode != 0 and "Unable to validate the following destination" in bad.stderr
