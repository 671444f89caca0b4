"""A table stream batch that waits out a throttle is one throttled request in /metrics (Lambda's
Throttles); its later refused tries are counted apart, and none is an invocation."""

from __future__ import annotations

import httpx
from conftest import make_zip
from prometheus_client.parser import text_string_to_metric_families
from trigger_helpers import create_mapping, scratch_db, unique, wait_for


def counter(url: str, family: str, function: str) -> float:
    """A counter's value for one function (0 if it has no sample yet), from /metrics."""
    text = httpx.get(f"{url}/metrics").text
    for fam in text_string_to_metric_families(text):
        if fam.name == family:
            return sum(s.value for s in fam.samples
                       if s.name == family + "_total" and s.labels.get("function") == function)
    return 0.0


def test_a_throttled_stream_batch_counts_as_one_throttle(server, lam, tmp_path):
    name = unique("thr")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role="r",
                        Handler="handler.handler",
                        Code={"ZipFile": make_zip({"handler.py": "def handler(e, c):\n"
                                                                 "    return {}\n"})})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with scratch_db("sqlite", tmp_path) as db:
        t = db.create("thr", "id integer PRIMARY KEY, n integer")
        create_mapping(lam, name, db.url(t), BatchSize=10)
        db.sql(f"INSERT INTO {t} VALUES (1, 1)")

        def refused() -> float:
            return (counter(server.url, "dayfly_throttles", name)
                    + counter(server.url, "dayfly_throttle_retries", name))
        # the consumer tries the batch again with a growing backoff while it is throttled
        assert wait_for(lambda: refused() >= 3, 30)
        lam.delete_function_concurrency(FunctionName=name)
        assert wait_for(lambda: counter(server.url, "dayfly_invocations", name) >= 1, 30)
    assert counter(server.url, "dayfly_throttles", name) == 1
    assert counter(server.url, "dayfly_throttle_retries", name) >= 2
    assert counter(server.url, "dayfly_invocations", name) == 1
