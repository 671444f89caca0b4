"""Every kind of event dayfly delivers to a function parses with AWS's own parsers: the models of
aws-lambda-powertools (pydantic v2), run on events a real `dayfly up` delivered to functions that
record what they receive.

S3 notifications (the built-in store, an external store's webhook), table streams on SQLite and
PostgreSQL (INSERT, MODIFY, REMOVE, types included) and their on-failure record, EventBridge
schedules, and the records asynchronous invocations send to their destinations. Powertools has
no model for the last (Lambda's asynchronous invocation record); `InvocationRecord` below is
AWS's documented shape ("Capturing records of Lambda asynchronous invocations"), with nothing
else allowed. dayfly sends no SQS-style batches and no API Gateway events.
"""

from __future__ import annotations

import base64
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamLambdaOnFailureDestinationModel,
    DynamoDBStreamModel,
    EventBridgeModel,
    S3Model,
)
from conftest import ALLOW_WEAK
from pydantic import BaseModel, ConfigDict, ValidationError
from trigger_helpers import create_mapping, deploy, received, records, scratch_db, unique, wait_for

sys.path.insert(0, str(Path(__file__).parents[1] / "buckets"))  # the S3 helpers live there
from bucket_helpers import lambda_config, new_bucket, notify, s3_client

SERVER_ARGS = ALLOW_WEAK  # trigger_helpers' recorder writes a host file: process tier
SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
FAIL = """
def behave(event):
    raise RuntimeError("nope")
"""


class RequestContext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requestId: str
    functionArn: str
    condition: Literal["Success", "RetriesExhausted", "EventAgeExceeded"]
    approximateInvokeCount: int


class ResponseContext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    statusCode: int
    executedVersion: str
    functionError: str | None = None


class InvocationRecord(BaseModel):
    """Lambda's asynchronous invocation record, as AWS documents it."""

    model_config = ConfigDict(extra="forbid")
    version: Literal["1.0"]
    timestamp: datetime
    requestContext: RequestContext
    requestPayload: Any
    responseContext: ResponseContext | None = None
    responsePayload: Any = None


def events(out: Path) -> list[dict[str, Any]]:
    return [inv["event"] for inv in received(out)]


def test_built_in_store_notifications_parse_as_s3_events(server, tmp_path):
    fn, out = unique("s3"), tmp_path / "s3.jsonl"
    deploy(server, fn, out)
    s3 = s3_client(server)
    bucket = new_bucket(s3, "parse")
    notify(s3, bucket, lambda_config(ARN + fn, ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                                     config_id="all"))
    s3.put_object(Bucket=bucket, Key="in/a b.jpg", Body=b"12345")
    s3.copy_object(Bucket=bucket, Key="in/copy.jpg", CopySource={"Bucket": bucket,
                                                                  "Key": "in/a b.jpg"})
    s3.delete_object(Bucket=bucket, Key="in/a b.jpg")
    assert wait_for(lambda: len(events(out)) >= 3), received(out)
    parsed = [parse(event=e, model=S3Model).Records[0] for e in events(out)]
    assert sorted(r.eventName for r in parsed) == [
        "ObjectCreated:Copy", "ObjectCreated:Put", "ObjectRemoved:Delete"]
    put = next(r for r in parsed if r.eventName == "ObjectCreated:Put")
    assert put.eventSource == "aws:s3" and put.awsRegion == "us-east-1"
    assert (put.s3.bucket.name, put.s3.bucket.arn) == (bucket, f"arn:aws:s3:::{bucket}")
    assert put.s3.configurationId == "all"
    assert put.s3.object.key == "in/a+b.jpg" and put.s3.object.size == 5
    assert put.s3.object.eTag and put.eventTime.tzinfo is not None


MINIO_RECORD = {  # a record as MinIO's webhook target posts it
    "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
    "eventTime": "2026-11-28T01:00:00.000Z", "eventName": "s3:ObjectCreated:Put",
    "userIdentity": {"principalId": "minioadmin"},
    "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "10.0.0.7"},
    "responseElements": {"x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
                         "x-amz-request-id": "17F2A1B2C3D4E5F6",
                         "x-minio-deployment-id": "2d8f1a0c", "x-minio-origin-endpoint": "http://10.0.0.7:9000"},
    "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
           "bucket": {"name": "media", "ownerIdentity": {"principalId": "minioadmin"},
                      "arn": "arn:aws:s3:::media"},
           "object": {"key": "clips%2Fa+b.mp4", "size": 42, "eTag": "abc",
                      "contentType": "video/mp4", "sequencer": "17F2A1B2C3D4E5F6"}},
    "source": {"host": "10.0.0.7", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7"},
}


def test_external_store_webhooks_parse_as_s3_events(server, tmp_path):
    fn, out = unique("ingest"), tmp_path / "ingest.jsonl"
    deploy(server, fn, out)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        r = api.post("/dayfly/v1/ingest/sources", json={"name": unique("minio")})
        assert r.status_code == 201, r.text
        source = r.json()
        r = api.post("/dayfly/v1/bucket-triggers", json={
            "function": fn, "bucket": "media", "source": source["name"], "events": "created"})
        assert r.status_code == 201, r.text
        auth = {"Authorization": f"Bearer {source['token']}"}
        for body in ({"EventName": "s3:ObjectCreated:Put", "Key": "media/clips/a b.mp4",
                      "Records": [MINIO_RECORD]},
                     {"EventName": "s3:ObjectCreated:Put", "Key": "media/clips/c.mp4"}):
            r = api.post(source["url"], json=body, headers=auth)
            assert r.status_code == 200 and r.json()["queued"] == 1, r.text
    assert wait_for(lambda: len(events(out)) >= 2), received(out)
    full, minimal = sorted((e["Records"][0] for e in events(out)), key=lambda r: "size" not in
                           r["s3"]["object"])
    rec = parse(event={"Records": [full]}, model=S3Model).Records[0]
    assert (rec.eventSource, rec.eventName) == ("aws:s3", "ObjectCreated:Put")
    assert full["dayfly"] == {"eventSource": "minio:s3"}  # what the store said it was
    assert (rec.s3.bucket.name, rec.s3.object.key, rec.s3.object.size) == (
        "media", "clips%2Fa+b.mp4", 42)
    assert str(rec.requestParameters.sourceIPAddress) == "10.0.0.7/32"  # the store's, kept
    # a body with only EventName and Key: everything but the object's size and ETag, which
    # the body does not carry and dayfly does not make up
    with pytest.raises(ValidationError) as info:
        parse(event={"Records": [minimal]}, model=S3Model)
    assert [e["msg"] for e in info.value.errors()] == [
        "Value error, Size and eTag fields are required for all events except "
        "ObjectRemoved:* and LifecycleExpiration:*."]
    assert minimal["s3"]["object"]["key"] == "clips/c.mp4"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_table_streams_parse_as_dynamodb_streams(server, lam, tmp_path, kind):
    with scratch_db(kind, tmp_path) as db:
        fn, out = unique("ddb"), tmp_path / "ddb.jsonl"
        deploy(server, fn, out)
        t = db.create("orders")
        create_mapping(lam, fn, db.url(t), BatchSize=1)
        db.sql(f"INSERT INTO {db.ns}{t} VALUES (1, 'pen', 1.5, ?, ?, NULL)", True, b"\x01\xff")
        db.sql(f"UPDATE {db.ns}{t} SET name = 'ink', paid = ? WHERE id = 1", False)
        db.sql(f"DELETE FROM {db.ns}{t} WHERE id = 1")
        assert wait_for(lambda: len(records(out)) >= 3, 60), received(out)
    parsed = [rec for e in events(out) for rec in parse(event=e, model=DynamoDBStreamModel).Records]
    assert [r.eventName for r in parsed] == ["INSERT", "MODIFY", "REMOVE"]
    table = f"{db.ns}{t}" if kind == "postgresql" else t
    for r in parsed:
        assert r.eventSource == "aws:dynamodb" and r.awsRegion == "us-east-1"
        assert r.eventSourceARN.startswith(
            f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/{kind}:")
        assert r.dynamodb.Keys == {"id": Decimal(1)}
        assert r.dynamodb.StreamViewType == "NEW_AND_OLD_IMAGES"
        assert isinstance(r.dynamodb.ApproximateCreationDateTime, datetime)
    ins, mod, rem = (r.dynamodb for r in parsed)
    blob = base64.b64encode(b"\x01\xff").decode()  # DynamoDB's JSON carries B as base64
    assert ins.NewImage == {"id": Decimal(1), "name": "pen", "price": Decimal("1.5"),
                            "paid": True, "data": blob, "meta": None}
    assert ins.OldImage is None and rem.NewImage is None
    assert (mod.OldImage["name"], mod.NewImage["name"], mod.NewImage["paid"]) == ("pen", "ink",
                                                                                 False)
    assert rem.OldImage["name"] == "ink"


def test_table_on_failure_records_parse(server, lam, tmp_path):
    with scratch_db("sqlite", tmp_path) as db:
        fn, out = unique("ddbfail"), tmp_path / "fails.jsonl"
        dest, dest_out = unique("ddbdest"), tmp_path / "dest.jsonl"
        deploy(server, fn, out, FAIL)
        deploy(server, dest, dest_out)
        t = db.create("orders")
        create_mapping(lam, fn, db.url(t), MaximumRetryAttempts=0, DestinationConfig={
            "OnFailure": {"Destination": ARN + dest}})
        db.sql(f"INSERT INTO {t} (id) VALUES (1)")
        assert wait_for(lambda: received(dest_out), 30)
    failure = parse(event=events(dest_out)[0], model=DynamoDBStreamLambdaOnFailureDestinationModel)
    sent = records(out)[0]
    assert failure.request_context.condition == "RetryAttemptsExhausted"
    assert failure.request_context.function_arn.startswith(ARN + fn)
    assert failure.response_context.function_error == "Unhandled"
    info = failure.ddb_stream_batch_info
    assert info.stream_arn == sent["eventSourceARN"] and info.batch_size == 1
    assert info.start_sequence_number == sent["dynamodb"]["SequenceNumber"]


def test_schedules_parse_as_eventbridge_events(server, tmp_path):
    fn, out = unique("cron"), tmp_path / "cron.jsonl"
    deploy(server, fn, out)
    r = httpx.post(f"{server.url}/dayfly/v1/schedules", json={
        "FunctionName": fn, "ScheduleExpression": "rate(1 seconds)", "Name": fn})
    assert r.status_code == 201, r.text
    try:
        assert wait_for(lambda: events(out), 20)
    finally:
        httpx.delete(f"{server.url}/dayfly/v1/schedules/{fn}")
    ev = parse(event=events(out)[0], model=EventBridgeModel)
    assert (ev.source, ev.detail_type, ev.detail) == ("aws.events", "Scheduled Event", {})
    assert ev.resources == [f"arn:aws:events:us-east-1:000000000000:rule/{fn}"]
    assert ev.time.tzinfo is not None and ev.account == "000000000000"


def test_destination_records_have_lambdas_documented_shape(server, lam, tmp_path):
    ok, bad = unique("ok"), unique("bad")
    sink, sink_out = unique("sink"), tmp_path / "sink.jsonl"
    deploy(server, ok, tmp_path / "ok.jsonl")
    deploy(server, bad, tmp_path / "bad.jsonl", FAIL)
    deploy(server, sink, sink_out)
    lam.put_function_event_invoke_config(FunctionName=ok, DestinationConfig={
        "OnSuccess": {"Destination": ARN + sink}})
    lam.put_function_event_invoke_config(FunctionName=bad, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": sink}})
    lam.invoke(FunctionName=ok, InvocationType="Event", Payload=b'{"order": 7}')
    lam.invoke(FunctionName=bad, InvocationType="Event", Payload=b'{"order": 8}')
    assert wait_for(lambda: len(events(sink_out)) >= 2, 30), received(sink_out)
    got = {r.requestContext.condition: r
           for r in (InvocationRecord.model_validate(e) for e in events(sink_out))}
    success, failure = got["Success"], got["RetriesExhausted"]
    assert success.requestContext.functionArn == f"{ARN}{ok}:$LATEST"
    assert success.requestPayload == {"order": 7} and success.responsePayload == {"ok": True}
    assert success.responseContext == ResponseContext(statusCode=200, executedVersion="$LATEST")
    assert failure.requestContext.functionArn == f"{ARN}{bad}:$LATEST"
    assert failure.requestContext.approximateInvokeCount == 1
    assert failure.responseContext is not None
    assert failure.responseContext.functionError == "Unhandled"
    assert failure.responsePayload["errorType"] == "RuntimeError"
