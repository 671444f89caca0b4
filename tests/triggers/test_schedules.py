"""Schedules end to end: EventBridge Scheduled Events through the durable queue, firing while
the function is scaled to zero, surviving a restart, and the missed-fire policies.

`rate(N seconds)` is a dayfly-only granularity that exists so these tests take seconds."""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from conftest import ALLOW_WEAK, start_server, stop_server
from trigger_helpers import deploy, received, unique, wait_for

SERVER_ARGS = ALLOW_WEAK  # trigger_helpers' recorder writes a host file: process tier

S = "/dayfly/v1/schedules"


def add(server, fn: str, expr: str, **kw) -> dict:
    r = httpx.post(f"{server.url}{S}", json={"FunctionName": fn, "ScheduleExpression": expr,
                                              **kw})
    assert r.status_code == 201, r.text
    return r.json()


def events(out: Path) -> list[dict]:
    return [inv["event"] for inv in received(out)]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def instances(server, fn: str) -> int:
    got = httpx.get(f"{server.url}/dayfly/v1/functions/{fn}/instances").json()
    return sum(1 for i in got["instances"] if i["state"] in ("idle", "busy"))


def test_a_rate_schedule_fires_eventbridge_events_even_when_scaled_to_zero(server, tmp_path):
    fn, out = unique("tick"), tmp_path / "tick.jsonl"
    deploy(server, fn, out)
    assert instances(server, fn) == 0
    s = add(server, fn, "rate(2 seconds)", Name=f"{fn}-every-2s")
    assert s["State"] == "ENABLED" and s["NextFire"]
    assert wait_for(lambda: events(out), 20)
    httpx.delete(f"{server.url}/dayfly/v1/functions/{fn}/instances")  # scale to zero
    n = len(events(out))
    assert wait_for(lambda: len(events(out)) > n, 20)
    first, second = events(out)[:2]
    assert set(first) == {"version", "id", "detail-type", "source", "account", "time",
                          "region", "resources", "detail"}
    assert (first["version"], first["detail-type"], first["source"]) == (
        "0", "Scheduled Event", "aws.events")
    assert first["account"] == "000000000000" and first["region"] == "us-east-1"
    assert first["resources"] == [f"arn:aws:events:us-east-1:000000000000:rule/{fn}-every-2s"]
    assert first["detail"] == {} and first["id"] != second["id"]
    assert first["time"].endswith("Z")
    gap = epoch(second["time"]) - epoch(first["time"])
    assert gap >= 2 and gap % 2 == 0  # fire times on the 2 s grid (a late wake-up coalesces)
    records = httpx.get(f"{server.url}/dayfly/v1/functions/{fn}/invocations").json()
    oldest_first = records["invocations"][::-1]
    assert {r["trigger"] for r in oldest_first} == {"schedule"}
    assert oldest_first[0]["cold"] and oldest_first[n]["cold"]  # both fired from zero
    got = httpx.get(f"{server.url}{S}/{s['Id']}").json()
    assert got["LastFire"] is not None
    assert httpx.delete(f"{server.url}{S}/{s['Name']}").status_code == 204
    n = len(events(out))
    time.sleep(3)
    assert len(events(out)) == n  # removed schedules stop firing


def test_schedule_api_validation_and_updates(server, tmp_path):
    fn = unique("sched")
    deploy(server, fn, tmp_path / "sched.jsonl")
    for body, status, why in (
            ({"ScheduleExpression": "rate(5 minutes)"}, 400, "FunctionName is required"),
            ({"FunctionName": fn}, 400, "ScheduleExpression is required"),
            ({"FunctionName": fn, "ScheduleExpression": "cron(0 12 * * * *)"}, 400, "'?'"),
            ({"FunctionName": fn, "ScheduleExpression": "* * * * *", "Timezone": "Nowhere/X"},
             400, "Unknown time zone"),
            ({"FunctionName": fn, "ScheduleExpression": "* * * * *",
              "MissedFirePolicy": "sometimes"}, 400, "MissedFirePolicy"),
            ({"FunctionName": "no-such-fn", "ScheduleExpression": "* * * * *"}, 404,
             "Function not found")):
        r = httpx.post(f"{server.url}{S}", json=body)
        assert r.status_code == status and why in r.json()["message"], r.text
    s = add(server, fn, "cron(0 12 * * ? *)", Timezone="Europe/Paris", Name=f"{fn}-noon")
    assert s["NextFire"].endswith(":00:00Z") and s["Timezone"] == "Europe/Paris"
    dup = httpx.post(f"{server.url}{S}", json={"FunctionName": fn, "Name": f"{fn}-noon",
                                               "ScheduleExpression": "* * * * *"})
    assert dup.status_code == 409
    off = httpx.put(f"{server.url}{S}/{s['Id']}", json={"State": "DISABLED"}).json()
    assert off["State"] == "DISABLED" and off["NextFire"] is None
    listed = httpx.get(f"{server.url}{S}", params={"FunctionName": fn}).json()["Schedules"]
    assert [x["Id"] for x in listed] == [s["Id"]]
    assert httpx.delete(f"{server.url}{S}/{s['Id']}").status_code == 204
    assert httpx.get(f"{server.url}{S}/{s['Id']}").status_code == 404


PERIOD = 8


@pytest.mark.slow
def test_schedules_survive_a_restart_with_skip_and_catch_up(tmp_path):
    """Stop after fire 1, stay down past fire 2, restart before fire 3."""
    data = tmp_path / "data"
    srv = start_server(data, *ALLOW_WEAK)
    try:
        outs, grids = {}, {}
        for policy in ("skip", "catch-up"):
            fn = unique(policy)
            outs[policy] = tmp_path / f"{policy}.jsonl"
            deploy(srv, fn, outs[policy])
            s = add(srv, fn, f"rate({PERIOD} seconds)", MissedFirePolicy=policy)
            grids[policy] = s["Created"]

        def slot(policy: str, k: int) -> float:
            return grids[policy] + k * PERIOD

        def index(policy: str, ev: dict) -> int:  # event times are whole seconds
            return math.ceil((epoch(ev["time"]) - grids[policy]) / PERIOD)

        assert wait_for(lambda: all(events(o) for o in outs.values()), 3 * PERIOD)
        stop_server(srv)
        down = time.time()
        time.sleep(max(0.0, max(slot(p, 2) for p in grids) + 1.0 - time.time()))
        srv = start_server(data, *ALLOW_WEAK)
        up = time.time()
        if not (min(slot(p, 2) for p in grids) > down and max(slot(p, 3) for p in grids) > up + 1):
            pytest.fail(f"the machine was too slow for this test's timing (down {down:.1f}, "
                        f"up {up:.1f}, grids {grids})")
        assert wait_for(lambda: all(any(index(p, e) >= 3 for e in events(outs[p]))
                                    for p in grids), 3 * PERIOD)
    finally:
        stop_server(srv)
    fired = {p: sorted(index(p, e) for e in events(outs[p])) for p in grids}
    assert fired["skip"][:2] == [1, 3], fired
    assert fired["catch-up"][:3] == [1, 2, 3], fired
