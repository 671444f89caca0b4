"""Counters and records say what happened: a queued event that waits out a throttle is one
throttled request (its later throttled tries are counted apart), a dead letter's `attempts` are
the tries that ran the function, and the REPORT line of an out-of-memory or timed-out
invocation gives the memory the instance really used."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import ALLOW_WEAK, make_zip
from obs_helpers import deploy, scrape, value

SERVER_ARGS = ALLOW_WEAK  # the memory tests run in the process tier too

FAILING = """
def handler(event, context):
    raise RuntimeError("failing on purpose")
"""

HUNGRY = """
import time

def handler(event, context):
    held = []
    for _ in range(event["mb"] // 8):  # 8 MiB at a time, every page touched: resident
        chunk = bytearray(8 * 1024 * 1024)
        for i in range(0, len(chunk), 4096):
            chunk[i] = 1
        held.append(chunk)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return len(held) * 8
"""


def create(lam, name: str, code: str) -> None:
    lam.create_function(FunctionName=name, Runtime="python3.11", Role="r",
                        Handler="handler.handler", Code={"ZipFile": make_zip({"handler.py": code})})


def until(check, timeout: float = 60.0):
    """Poll an event the test caused (a counter moving, a dead letter appearing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = check()
        if out:
            return out
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def counter(url: str, family: str, name: str) -> float:
    fams = scrape(url)
    if family not in fams:
        return 0.0
    try:
        return value(fams, family, family + "_total", function=name)
    except AssertionError:
        return 0.0


def throttled_tries(url: str, name: str) -> float:
    """Every try refused for concurrency: the first of each request and the retries after it."""
    return (counter(url, "dayfly_throttles", name)
            + counter(url, "dayfly_throttle_retries", name))


def dead_letters(url: str, name: str) -> list[dict]:
    return httpx.get(f"{url}/dayfly/v1/functions/{name}/dlq").json()["dead_letters"]


def test_a_throttled_event_is_one_throttle_and_its_dead_letter_counts_real_tries(server, lam):
    name = "throttled-once"
    create(lam, name, FAILING)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    assert r["StatusCode"] == 202
    # the queue tries it again about once a second while it is throttled
    until(lambda: throttled_tries(server.url, name) >= 3)
    lam.delete_function_concurrency(FunctionName=name)
    (dead,) = until(lambda: dead_letters(server.url, name))
    assert counter(server.url, "dayfly_throttles", name) == 1  # one request was throttled
    assert dead["attempts"] == 1, dead  # the one try that ran the function (and failed)
    assert dead["throttles"] >= 3, dead  # the tries refused before it
    assert throttled_tries(server.url, name) == dead["throttles"]


def test_a_dead_letter_that_never_ran_says_zero_attempts(server, lam):
    name = "never-ran"
    create(lam, name, FAILING)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    until(lambda: throttled_tries(server.url, name) >= 1)
    lam.delete_function(FunctionName=name)  # its next try finds no function: dead-lettered
    (dead,) = until(lambda: dead_letters(server.url, name))
    assert "Function not found" in dead["error"] or "not found" in dead["error"].lower(), dead
    assert dead["attempts"] == 0, dead
    assert dead["throttles"] >= 1, dead


def max_memory_used(url: str, request_id: str) -> str:
    row = until(lambda: (r := httpx.get(f"{url}/dayfly/v1/invocations/{request_id}"))
                .status_code == 200 and r.json())
    report = [line for line in row["logs"].splitlines() if line.startswith("REPORT")]
    assert report, row["logs"]
    return report[0].split("Max Memory Used: ")[1].split("\t")[0]


def deploy_hungry(url: str, name: str, tier: str, memory: int, timeout: int) -> None:
    deploy(url, name, {"handler.py": HUNGRY, "dayfly.toml": f'isolation = "{tier}"\n'
                       f"memory = {memory}\ntimeout = {timeout}\n"})


@pytest.mark.parametrize("tier", ["linux", "process"])
def test_the_report_of_an_out_of_memory_invocation_shows_the_memory_it_used(server, lam, tier):
    name = f"oom-report-{tier}"
    deploy_hungry(server.url, name, tier, memory=128, timeout=10)
    r = lam.invoke(FunctionName=name, Payload=b'{"mb": 400}')
    assert r.get("FunctionError"), r
    used = max_memory_used(server.url, r["ResponseMetadata"]["RequestId"])
    assert used.endswith(" MB") and int(used.split()[0]) >= 64, used


@pytest.mark.parametrize("tier", ["linux", "process"])
def test_the_report_of_a_timed_out_invocation_shows_the_memory_it_used(server, lam, tier):
    name = f"timeout-report-{tier}"
    deploy_hungry(server.url, name, tier, memory=256, timeout=1)
    r = lam.invoke(FunctionName=name, Payload=b'{"mb": 64, "sleep": 30}')
    assert r.get("FunctionError"), r
    used = max_memory_used(server.url, r["ResponseMetadata"]["RequestId"])
    assert used.endswith(" MB") and int(used.split()[0]) >= 64, used
