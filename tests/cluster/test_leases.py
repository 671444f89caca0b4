"""Leases (dayfly/cluster/leases.py): one holder at a time across nodes, handed over when the
holder's database connection drops, and a schedule that fires once per tick on a cluster."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from cluster_helpers import poll, three_nodes
from pg_helpers import fresh_database
from trigger_helpers import create_mapping, deploy, received, records, scratch_db, unique

from dayfly.cluster.leases import InProcessLeases, Leases, PostgresLeases


class Work:
    """Start/stop callbacks that record whether the work runs."""

    def __init__(self) -> None:
        self.running = False
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.starts = 0

    async def start(self) -> None:
        self.running = True
        self.starts += 1
        self.stopped.clear()
        self.started.set()

    async def stop(self) -> None:
        self.running = False
        self.started.clear()
        self.stopped.set()


@pytest.fixture(scope="module")
def dsn():
    with fresh_database() as dsn:
        yield dsn


async def wait_for(event: asyncio.Event, timeout: float = 10.0) -> None:
    await asyncio.wait_for(event.wait(), timeout)


async def test_in_process_lease_is_granted_at_once_and_stopped_on_release():
    leases: Leases = InProcessLeases()
    work = Work()
    await leases.hold("x", work.start, work.stop)
    assert work.running and leases.held("x")  # granted before hold returned
    await leases.release("x")
    assert not work.running and not leases.held("x")


async def test_only_one_of_two_nodes_holds_a_lease_and_release_hands_it_over(dsn):
    a, b = PostgresLeases(dsn, "c1"), PostgresLeases(dsn, "c1")
    wa, wb = Work(), Work()
    await a.start()
    await b.start()
    try:
        await a.hold("sched", wa.start, wa.stop)
        await wait_for(wa.started)
        await b.hold("sched", wb.start, wb.stop)
        # b tries (and is refused) at least once while a holds it
        for _ in range(100):
            if b.waiting("sched"):
                break
            await asyncio.sleep(0.05)
        assert b.waiting("sched") and not wb.running and wa.running
        await a.release("sched")
        assert not wa.running
        await wait_for(wb.started)  # b takes it on its next round
        assert wb.running and b.held("sched") and not a.held("sched")
    finally:
        await a.close()
        await b.close()


async def test_another_cluster_name_is_another_lease(dsn):
    a, b = PostgresLeases(dsn, "c2"), PostgresLeases(dsn, "c3")
    wa, wb = Work(), Work()
    await a.start()
    await b.start()
    try:
        await a.hold("sched", wa.start, wa.stop)
        await b.hold("sched", wb.start, wb.stop)
        await wait_for(wa.started)
        await wait_for(wb.started)
    finally:
        await a.close()
        await b.close()


async def test_killing_the_holders_connection_stops_its_work_and_hands_the_lease_over(dsn):
    a, b = PostgresLeases(dsn, "c4"), PostgresLeases(dsn, "c4")
    wa, wb = Work(), Work()
    await a.start()
    await a.hold("m", wa.start, wa.stop)
    await wait_for(wa.started)
    await b.start()
    await b.hold("m", wb.start, wb.stop)
    try:
        for _ in range(100):
            if b.waiting("m"):
                break
            await asyncio.sleep(0.05)
        assert b.waiting("m") and not wb.running
        assert a.conn is not None
        pid = a.conn.info.backend_pid
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await wait_for(wa.stopped)  # a notices its connection is gone and stops the work
        await wait_for(wb.started)  # b acquires within a few rounds
        assert wb.running and not wa.running
        # a reconnects and waits: it does not take the lease back
        for _ in range(100):
            if a.waiting("m"):
                break
            await asyncio.sleep(0.05)
        assert a.waiting("m") and not wa.running and wa.starts == 1
    finally:
        await a.close()
        await b.close()


# -- on a real 3-node cluster --------------------------------------------------------------

S = "/dayfly/v1/schedules"


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    yield from three_nodes(tmp_path_factory)


def holder(cluster, lease: str = "schedules") -> int | None:
    """The live node whose log says it holds `lease` now."""
    holders = []
    for i, server in enumerate(cluster.nodes):
        if server is not None:
            text = server.log()
            taken = text.rfind(f"lease {lease} acquired")
            if taken >= 0 and taken > max(text.rfind(f"lease {lease} lost"),
                                          text.rfind(f"lease {lease} released")):
                holders.append(i)
    assert len(holders) <= 1, f"two nodes hold the lease {lease}: {holders}"
    return holders[0] if holders else None


def ticks(out: Path) -> list[float]:
    """Fire times of the Scheduled Events the recorder received, in arrival order."""
    return [epoch(inv["event"]["time"]) for inv in received(out)
            if inv["event"].get("detail-type") == "Scheduled Event"]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_schedule_fires_once_per_tick_on_three_nodes(cluster3, tmp_path):
    fn, out = unique("tick"), tmp_path / "tick.jsonl"
    deploy(cluster3.node(0), fn, out)
    r = httpx.post(f"{cluster3.node(1).url}{S}", json={"FunctionName": fn,
                                                       "ScheduleExpression": "rate(1 second)"})
    assert r.status_code == 201, r.text
    sched = r.json()
    try:
        assert poll(lambda: len(set(ticks(out))) >= 6, 30), ticks(out)
        # one runner: the other nodes wait for its lease (their event ids would coincide and
        # JetStream would drop the copies, but no node should be firing them at all)
        assert holder(cluster3) is not None
        seen = ticks(out)
        assert len(seen) == len(set(seen)), f"a tick fired twice: {sorted(seen)}"
        first = min(seen)
        assert sorted(seen) == [first + k for k in range(len(seen))], sorted(seen)
        # every node records into the one database: the records agree with the handler's file
        rids = {inv["rid"] for inv in received(out)}

        def recorded() -> set[str]:
            got = httpx.get(f"{cluster3.node(2).url}/dayfly/v1/functions/{fn}/invocations",
                            params={"limit": 1000}).json()
            return {i["request_id"] for i in got["invocations"]} & rids
        assert poll(lambda: recorded() == rids, 10), (len(recorded()), len(rids))
        # the nodes that ran it advertise its idle instances (GET /dayfly/v1/nodes, any node)
        def warm() -> dict[str, int]:
            nodes = httpx.get(f"{cluster3.node(0).url}/dayfly/v1/nodes").json()["nodes"]
            return {n["id"]: n["warm"].get(fn, 0) for n in nodes if n["warm"].get(fn)}
        assert poll(warm, 5), httpx.get(f"{cluster3.node(0).url}/dayfly/v1/nodes").json()
    finally:
        httpx.delete(f"{cluster3.node(0).url}{S}/{sched['Id']}")


def test_the_schedule_resumes_on_another_node_within_10s_of_a_kill_9_skipping_nothing(
        cluster3, tmp_path):
    fn, out = unique("tock"), tmp_path / "tock.jsonl"
    deploy(cluster3.node(0), fn, out)
    r = httpx.post(f"{cluster3.node(0).url}{S}", json={"FunctionName": fn,
                                                       "ScheduleExpression": "rate(1 second)"})
    assert r.status_code == 201, r.text
    runner = None
    try:
        assert poll(lambda: len(ticks(out)) >= 3, 30), ticks(out)
        runner = holder(cluster3)
        assert runner is not None
        cluster3.kill(runner)
        killed = time.time()
        # the lease is taken over and fires go on: a tick later than the kill within 10 s
        assert poll(lambda: any(t > killed + 1 for t in ticks(out)), 10), (killed, ticks(out))
        assert poll(lambda: holder(cluster3) not in (None, runner), 5)
        # nothing skipped: every tick from the first to the last arrives (one the dead node was
        # delivering comes again once its JetStream delivery times out)
        last = max(ticks(out))

        def contiguous() -> bool:
            seen = sorted(set(ticks(out)))
            return seen[-1] >= last and seen == [seen[0] + k for k in range(len(seen))]
        assert poll(contiguous, 45), sorted(set(ticks(out)))
        assert len(ticks(out)) == len(set(ticks(out))), "a tick fired twice"
    finally:
        if runner is not None and cluster3.nodes[runner] is None:
            cluster3.restart(runner)
        httpx.delete(f"{cluster3.node(0).url}{S}/{r.json()['Id']}")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_table_stream_resumes_on_another_node_within_10s_of_a_kill_9_skipping_nothing(
        cluster3, tmp_path, kind):
    fn, out = unique("rows"), tmp_path / "rows.jsonl"
    deploy(cluster3.node(0), fn, out)
    with scratch_db(kind, tmp_path) as db:
        table = db.create(f"t_{unique('x').replace('-', '_')}", "id integer PRIMARY KEY, v text")
        mapping = create_mapping(cluster3.node(0).lambda_client(), fn, db.url(table),
                                 BatchSize=5)
        lease = f"mapping:{mapping['UUID']}"

        def delivered() -> set[int]:
            return {int(r["dynamodb"]["Keys"]["id"]["N"]) for r in records(out)}
        consumer = None
        try:
            assert poll(lambda: holder(cluster3, lease) is not None, 10)
            others = [i for i in range(3) if i != holder(cluster3, lease)]

            def health(i: int) -> str:
                return httpx.get(f"{cluster3.node(i).url}/2015-03-31/event-source-mappings/"
                                 f"{mapping['UUID']}").json().get("Health", "")
            assert poll(lambda: all(health(i).startswith("standby") for i in others), 5), [
                health(i) for i in others]
            for i in range(1, 21):
                db.sql(f"INSERT INTO {db.ns}{table} (id, v) VALUES (?, ?)", i, f"row {i}")
            assert poll(lambda: delivered() >= set(range(1, 21)), 30), sorted(delivered())
            consumer = holder(cluster3, lease)
            assert consumer is not None
            cluster3.kill(consumer)
            killed = time.monotonic()
            for i in range(21, 41):
                db.sql(f"INSERT INTO {db.ns}{table} (id, v) VALUES (?, ?)", i, f"row {i}")
            assert poll(lambda: 21 in delivered(), 10), sorted(delivered())
            resumed = time.monotonic() - killed
            assert resumed <= 10
            assert holder(cluster3, lease) not in (None, consumer)
            assert poll(lambda: delivered() == set(range(1, 41)), 30), sorted(delivered())
        finally:
            if consumer is not None and cluster3.nodes[consumer] is None:
                cluster3.restart(consumer)
            httpx.delete(f"{cluster3.node(0).url}/2015-03-31/event-source-mappings/"
                         f"{mapping['UUID']}")
