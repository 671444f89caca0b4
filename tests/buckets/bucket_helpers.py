"""Helpers for the bucket-trigger tests: S3 clients from the data dir's credentials, deploys,
and the events a function logged (its handler prints `EVENT <json>`).

Not a conftest.py: the top-level tests/conftest.py is imported as `conftest`.
"""

from __future__ import annotations

import configparser
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from conftest import make_zip

REGION = "us-east-1"
ECHO = """
import json
def handler(event, context):
    print("EVENT " + json.dumps(event))
    print("KEY " + json.dumps([event.get("dayfly", {}).get("idempotencyKey"),
                               context.idempotency_key]))
"""
_counter = itertools.count()


def s3_client(server, key_id: str | None = None, secret: str | None = None):
    import boto3
    from botocore.config import Config

    if key_id is None:
        cp = configparser.ConfigParser()
        cp.read(server.data_dir / "credentials")
        key_id, secret = cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"]
    return boto3.client("s3", endpoint_url=server.url, region_name=REGION,
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def new_bucket(s3, prefix: str = "bkt") -> str:
    name = f"{prefix}-{next(_counter)}-{int(time.time() * 1000) % 100000}"
    s3.create_bucket(Bucket=name)
    return name


def deploy(server, name: str, files: dict[str, str]) -> dict:
    """Deploy through the dayfly API (dayfly.toml and requirements.txt honoured)."""
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=make_zip(files), headers={"content-type": "application/zip"}, timeout=300) as r:
        lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
    assert "function" in lines[-1], lines[-5:]
    return lines[-1]["function"]


def invocations(server, name: str) -> list[dict]:
    return httpx.get(f"{server.url}/dayfly/v1/functions/{name}/invocations",
                     params={"limit": 1000}).json()["invocations"]


def logged(server, name: str, tag: str = "EVENT") -> list[Any]:
    """Every `TAG <json>` line the function printed, oldest invocation first."""
    out = []
    for inv in reversed(invocations(server, name)):
        out += [json.loads(line[len(tag) + 1:]) for line in inv["logs"].splitlines()
                if line.startswith(tag + " ")]
    return out


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def notify(s3, bucket: str, *configs: dict) -> None:
    """PutBucketNotificationConfiguration with LambdaFunctionConfigurations."""
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": list(configs)})


def lambda_config(function: str, events: list[str], prefix: str = "", suffix: str = "",
                  config_id: str | None = None) -> dict:
    rules = [{"Name": n, "Value": v} for n, v in (("prefix", prefix), ("suffix", suffix)) if v]
    out: dict[str, Any] = {"LambdaFunctionArn": function, "Events": events}
    if rules:
        out["Filter"] = {"Key": {"FilterRules": rules}}
    if config_id:
        out["Id"] = config_id
    return out
