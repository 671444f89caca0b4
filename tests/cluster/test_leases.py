"""Leases (dayfly/cluster/leases.py): one holder at a time across nodes, handed over when the
holder's database connection drops, and a schedule that fires once per tick on a cluster."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from pg_helpers import fresh_database

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
