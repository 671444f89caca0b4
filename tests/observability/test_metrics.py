"""/metrics in Prometheus' text format (checked by prometheus_client's parser), and trace
context from the caller's traceparent to the record and the handler's context."""

from __future__ import annotations

import configparser

import boto3
import pytest
from botocore.config import Config
from obs_helpers import deploy, invoke, records, scrape, value

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def fn(server):
    deploy(server.url, "metered")
    return "metered"


def test_traceparent_reaches_the_record_and_the_handler(server, fn):
    r = invoke(server.url, fn, {}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    assert r.json() == {"trace_id": TRACEPARENT, "env_trace": TRACEPARENT}
    rid = r.headers["x-amzn-requestid"]
    rows = [row for row in records(server.url, fn) if row["request_id"] == rid]
    assert rows and rows[0]["trace_id"] == TRACEPARENT
    # the next invocation without a trace does not see the previous one's
    r = invoke(server.url, fn, {})
    assert r.json() == {"trace_id": None, "env_trace": None}


def test_invocations_durations_and_cold_starts_are_counted(server, fn):
    before = scrape(server.url)
    ok0 = value(before, "dayfly_invocations", "dayfly_invocations_total", function=fn,
                status="success") if "dayfly_invocations" in before else 0
    for _ in range(3):
        assert invoke(server.url, fn, {}).status_code == 200
    assert invoke(server.url, fn, {"fail": 1}).headers.get("x-amz-function-error")
    fams = scrape(server.url)
    assert value(fams, "dayfly_invocations", "dayfly_invocations_total", function=fn,
                 version="$LATEST", status="success") == ok0 + 3
    assert value(fams, "dayfly_invocations", "dayfly_invocations_total", function=fn,
                 status="error") >= 1
    count = value(fams, "dayfly_invocation_duration_seconds",
                  "dayfly_invocation_duration_seconds_count", function=fn)
    inf = value(fams, "dayfly_invocation_duration_seconds",
                "dayfly_invocation_duration_seconds_bucket", function=fn, le="+Inf")
    assert count == inf >= ok0 + 4
    assert fams["dayfly_invocation_duration_seconds"].type == "histogram"
    assert value(fams, "dayfly_cold_starts", "dayfly_cold_starts_total", function=fn) >= 1
    assert value(fams, "dayfly_init_duration_seconds", "dayfly_init_duration_seconds_count",
                 function=fn) >= 1
    assert value(fams, "dayfly_instances", "dayfly_instances", function=fn, state="idle") >= 1
    starts = sum(s.value for s in fams["dayfly_sandbox_starts"].samples
                 if s.labels["result"] == "ok" and s.name.endswith("_total"))
    assert starts >= 1


def test_platform_gauges_are_present(server, fn):
    fams = scrape(server.url)
    for family in ("dayfly_async_queue_depth", "dayfly_async_queue_oldest_age_seconds",
                   "dayfly_dead_letters", "dayfly_event_source_healthy", "dayfly_functions",
                   "dayfly_build_info", "dayfly_throttles", "dayfly_s3_requests"):
        assert family in fams, sorted(fams)
    assert value(fams, "dayfly_functions", "dayfly_functions") >= 1


def test_s3_requests_are_counted_by_operation_and_status(server):
    cfg = configparser.ConfigParser()
    cfg.read(server.data_dir / "credentials")
    s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                      aws_access_key_id=cfg["default"]["aws_access_key_id"],
                      aws_secret_access_key=cfg["default"]["aws_secret_access_key"],
                      config=Config(retries={"max_attempts": 1}))
    s3.create_bucket(Bucket="metered-bucket")
    s3.put_object(Bucket="metered-bucket", Key="k", Body=b"x")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="metered-bucket", Key="missing")
    fams = scrape(server.url)
    assert value(fams, "dayfly_s3_requests", "dayfly_s3_requests_total",
                 operation="put_object", status="200") >= 1
    assert value(fams, "dayfly_s3_requests", "dayfly_s3_requests_total",
                 operation="get_object", status="404") >= 1
