"""Helpers of the observability tests: deploy over the dayfly API, invoke, read records."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
from conftest import make_zip
from prometheus_client.parser import text_string_to_metric_families

HANDLER = """
    import os

    def handler(event, context):
        print("event", event, "trace", context.trace_id)
        if event.get("fail"):
            raise ValueError("boom")
        return {"trace_id": context.trace_id, "env_trace": os.environ.get("_X_AMZN_TRACE_ID")}
"""


def deploy(url: str, name: str, files: dict[str, str] | None = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Create or update NAME from files (default: HANDLER) and return its configuration."""
    body = make_zip(files or {"handler.py": HANDLER})
    r = httpx.post(f"{url}/dayfly/v1/functions/{name}/deploy", content=body, timeout=120,
                   headers={"content-type": "application/zip", **(headers or {})})
    r.raise_for_status()
    last = orjson.loads(r.text.strip().splitlines()[-1])
    assert "function" in last, last
    return last["function"]


def invoke(url: str, name: str, event: dict | None = None,
           headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/2015-03-31/functions/{name}/invocations",
                      content=orjson.dumps(event or {}), headers=headers, timeout=60)


def records(url: str, name: str, headers: dict[str, str] | None = None,
            wait_for: int = 1) -> list[dict[str, Any]]:
    """The function's invocation records (newest first), waiting until there are enough."""
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(f"{url}/dayfly/v1/functions/{name}/invocations", headers=headers)
        r.raise_for_status()
        rows = r.json()["invocations"]
        if len(rows) >= wait_for or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """/metrics, parsed by prometheus_client: metric families by name."""
    r = httpx.get(f"{url}/metrics", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict, family: str, sample: str, **labels: str) -> float:
    """One sample's value; AssertionError if there is none with these labels."""
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {sample}{labels} in {families[family].samples}")


def runs(url: str, name: str, headers: dict[str, str] | None = None) -> int:
    """Invocations of NAME finished or still queued (an accepted Event is on disk before its
    202), so a request that ran or queued anything changes it by the time it is answered."""
    families = scrape(url, headers)
    total = 0.0
    for family, sample in (("dayfly_invocations", "dayfly_invocations_total"),
                           ("dayfly_async_queue_depth", "dayfly_async_queue_depth")):
        if family in families:
            total += sum(s.value for s in families[family].samples
                         if s.name == sample and s.labels.get("function") == name)
    return int(total)
