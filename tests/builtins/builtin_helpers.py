"""Helpers for the builtins' tests: deploys by name, invokes, S3 clients and events, and a
webhook receiver that records what it was sent.

Not a conftest.py: the top-level tests/conftest.py is imported as `conftest`.
"""

from __future__ import annotations

import configparser
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote_plus

import httpx

REGION = "us-east-1"


def s3_client(server):
    import boto3
    from botocore.config import Config

    cp = configparser.ConfigParser()
    cp.read(server.data_dir / "credentials")
    return boto3.client("s3", endpoint_url=server.url, region_name=REGION,
                        aws_access_key_id=cp["default"]["aws_access_key_id"],
                        aws_secret_access_key=cp["default"]["aws_secret_access_key"],
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def deploy_builtin(server, builtin: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The final NDJSON record of `POST /dayfly/v1/builtins/B/deploy`, or the error answer."""
    with httpx.stream("POST", f"{server.url}/dayfly/v1/builtins/{builtin}/deploy",
                      json={"name": name, "config": config}, timeout=300) as r:
        if r.status_code >= 400:
            r.read()
            return {"error": {"status": r.status_code, **r.json()}}
        lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
    return lines[-1]


def deployed(server, builtin: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    last = deploy_builtin(server, builtin, name, config)
    assert "function" in last, last
    return last


def invoke(server, name: str, event: Any) -> tuple[str | None, Any]:
    """(X-Amz-Function-Error or None, decoded response) of a synchronous invoke."""
    r = httpx.post(f"{server.url}/2015-03-31/functions/{name}/invocations", json=event,
                   timeout=180)
    assert r.status_code == 200, r.text
    return r.headers.get("x-amz-function-error"), r.json()


def s3_event(bucket: str, key: str, size: int | None = None,
             name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """An S3 event as a bucket trigger delivers it (the key URL-encoded, as S3 does)."""
    obj: dict[str, Any] = {"key": quote_plus(key)}
    if size is not None:
        obj["size"] = size
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
                         "eventName": name, "s3": {"bucket": {"name": bucket}, "object": obj}}]}


def add_bucket_trigger(server, function: str, bucket: str, **filters: str) -> None:
    r = httpx.post(f"{server.url}/dayfly/v1/bucket-triggers",
                   json={"function": function, "bucket": bucket, **filters})
    assert r.status_code == 201, r.text


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def invocations(server, name: str) -> list[dict[str, Any]]:
    return httpx.get(f"{server.url}/dayfly/v1/functions/{name}/invocations",
                     params={"limit": 1000}).json()["invocations"]


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


class Receiver:
    """A webhook receiver on 127.0.0.1: records (headers, body); answers from `statuses` first
    (e.g. [500, 500]) and 204 after that."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with outer._lock:
                    outer.requests.append(({k.lower(): v for k, v in self.headers.items()},
                                           body, time.time()))
                    status = outer.statuses.pop(0) if outer.statuses else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
