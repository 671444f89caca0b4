"""The contract every durable-queue backend passes: SQLite (one node) and JetStream (a cluster).

The JetStream runs use the NATS server at 127.0.0.1:4222 (DAYFLY_NATS overrides it), a
stream prefix of their own, and delete their streams afterwards; without NATS they skip (and
fail in strict CI mode). The last tests are the cluster's own: two queues on two connections
are two nodes, and an event held by a node that dies goes to the other.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from dayfly.stores.db import Database
from dayfly.stores.queue import Event, EventQueue, Queue

NATS = os.environ.get("DAYFLY_NATS", "nats://127.0.0.1:4222")
ACK_WAIT = 1.0  # the JetStream queues' ack_wait here: a dead node's delivery returns after it


async def nats_connect():
    nats = pytest.importorskip("nats")
    try:
        return await nats.connect(NATS, connect_timeout=2, allow_reconnect=False)
    except Exception as exc:  # any failure to reach it means "not here"
        pytest.skip(f"NATS with JetStream is not reachable at {NATS}: {exc}")


@pytest.fixture(params=["sqlite", "jetstream"])
async def queue(request, tmp_path) -> AsyncIterator[Queue]:
    if request.param == "sqlite":
        db = Database(tmp_path / "q.db")
        q: Queue = EventQueue(db)
        await q.start()
        yield q
        await q.close()
        db.close()
        return
    from dayfly.stores.jsqueue import JetStreamQueue
    nc = await nats_connect()
    js_q = JetStreamQueue(nc.jetstream(), f"t_{uuid.uuid4().hex[:12]}", ack_wait_s=ACK_WAIT)
    try:
        await js_q.start()
        yield js_q
    finally:
        await js_q.delete()
        await nc.close()


async def take_all(q: Queue, n: int, wait_s: float = 10.0) -> list[Event]:
    """Take until `n` events arrived (or `wait_s` passed)."""
    out: list[Event] = []
    deadline = time.monotonic() + wait_s
    while len(out) < n and time.monotonic() < deadline:
        out += await q.take(n - len(out), max(0.01, deadline - time.monotonic()))
    return out


async def test_put_take_ack(queue: Queue):
    payload = os.urandom(256 * 1024)  # Lambda's limit for an asynchronous invoke
    ev_id = await queue.put("fn", "live", payload, "s3", chain=["a", "b"],
                            target="http://127.0.0.1:9/hook")
    assert await queue.depth("fn") == 1 and await queue.depth() == 1
    assert await queue.depth("other") == 0
    [ev] = await take_all(queue, 1)
    assert (ev.id, ev.function, ev.qualifier, ev.payload, ev.trigger, ev.chain, ev.target,
            ev.attempts, ev.throttles) == (ev_id, "fn", "live", payload, "s3", ["a", "b"],
                                           "http://127.0.0.1:9/hook", 0, 0)
    assert ev.created == pytest.approx(time.time(), abs=30)
    assert await queue.take(10, 0.05) == []  # being delivered: handed to nobody else
    assert await queue.depth("fn") == 1  # still queued until acked
    await queue.ack(ev)
    assert await queue.depth("fn") == 0
    assert await queue.take(10, 0.05) == []


async def test_take_returns_as_soon_as_an_event_comes(queue: Queue):
    """A take waiting for a full batch would hold the first event until its wait ran out."""
    taking = asyncio.ensure_future(queue.take(64, 5.0))
    await asyncio.sleep(0.2)  # let the take start waiting (its wait is 5 s)
    t0 = time.monotonic()
    ev_id = await queue.put("fn", None, b"{}")
    [ev] = await taking
    assert ev.id == ev_id
    assert time.monotonic() - t0 < 2.0
    await queue.ack(ev)


async def test_retry_is_due_after_its_delay_with_its_counts(queue: Queue):
    await queue.put("fn", None, b"{}")
    [ev] = await take_all(queue, 1)
    ev.attempts, ev.throttles = 1, 2
    t0 = time.monotonic()
    await queue.retry(ev, 0.5)
    assert await queue.take(10, 0.0) == []  # not due yet
    [again] = await take_all(queue, 1)
    assert time.monotonic() - t0 >= 0.4
    assert (again.id, again.attempts, again.throttles) == (ev.id, 1, 2)
    again.attempts += 1
    await queue.retry(again, 0.0)
    [third] = await take_all(queue, 1)
    assert (third.attempts, third.throttles) == (2, 2)
    await queue.ack(third)
    assert await queue.depth() == 0


async def test_release_hands_the_event_out_again_unchanged(queue: Queue):
    await queue.put("fn", None, b"x")
    [ev] = await take_all(queue, 1)
    await queue.release(ev)
    [again] = await take_all(queue, 1)
    assert (again.id, again.payload, again.attempts) == (ev.id, b"x", 0)
    await queue.ack(again)


async def test_the_same_id_is_stored_once(queue: Queue):
    a = await queue.put("fn", None, b"1", event_id="evt-1")
    b = await queue.put("fn", None, b"1", event_id="evt-1")
    assert a == b == "evt-1"
    assert await queue.depth("fn") == 1
    [ev] = await take_all(queue, 1)
    await queue.ack(ev)
    assert await queue.take(10, 0.1) == []


async def test_dead_letters_list_redrive_purge(queue: Queue):
    ids = [await queue.put("f1", "1", f"p{i}".encode(), "event", chain=["up"]) for i in range(3)]
    other = await queue.put("f2", None, b"q")
    taken = await take_all(queue, 4)
    assert sorted(e.id for e in taken) == sorted([*ids, other])
    for ev in taken:
        ev.attempts, ev.throttles = 3, 1
        await queue.dead_letter(ev, f"boom {ev.id}\nTraceback: line 2 … → ✓")
    assert await queue.depth() == 0

    rows = await queue.dead("f1")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert [r["failed"] for r in rows] == sorted((r["failed"] for r in rows), reverse=True)
    row = next(r for r in rows if r["id"] == ids[0])
    assert {k: row[k] for k in ("function", "qualifier", "payload", "trigger", "attempts",
                                "throttles", "error", "chain", "target")} == {
        "function": "f1", "qualifier": "1", "payload": "p0", "trigger": "event", "attempts": 3,
        "throttles": 1, "error": f"boom {ids[0]}\nTraceback: line 2 … → ✓", "chain": ["up"],
        "target": None}
    assert row["created"] <= row["failed"] <= time.time()
    assert len(await queue.dead("f1", 2)) == 2
    assert [r["id"] for r in await queue.dead("f1", 1, ids[1])] == [ids[1]]
    assert await queue.dead("f1", 1, "no-such-event") == []
    summary = await queue.summary()
    assert summary.dead == {"f1": 3, "f2": 1} and summary.events == {}

    # redriven at once: a second copy of the same id must not be taken for a duplicate
    assert await queue.redrive("f1", [ids[0]]) == 1
    [back] = await take_all(queue, 1)
    assert (back.id, back.payload, back.attempts, back.throttles, back.chain) == (
        ids[0], b"p0", 0, 0, ["up"])
    await queue.ack(back)
    assert sorted(r["id"] for r in await queue.dead("f1")) == sorted(ids[1:])

    assert await queue.purge("f1", [ids[1]]) == 1
    assert [r["id"] for r in await queue.dead("f1")] == [ids[2]]
    assert await queue.redrive("f1") == 1
    [back] = await take_all(queue, 1)
    assert back.id == ids[2]
    await queue.ack(back)
    assert await queue.dead("f1") == []
    assert await queue.purge("f2") == 1
    assert await queue.dead("f2") == [] and (await queue.summary()).dead == {}


async def test_depth_and_summary_per_function(queue: Queue):
    t0 = time.time()
    for fn, n in (("a", 3), ("b", 1)):
        for _ in range(n):
            await queue.put(fn, None, b"{}")
    assert (await queue.depth("a"), await queue.depth("b"), await queue.depth()) == (3, 1, 4)
    summary = await queue.summary()
    assert summary.events == {"a": 3, "b": 1}
    assert summary.oldest_created is not None
    assert t0 - 1 <= summary.oldest_created <= time.time()
    for ev in await take_all(queue, 4):
        await queue.ack(ev)
    summary = await queue.summary()
    assert (summary.events, summary.oldest_created) == ({}, None)


# -- two nodes on one JetStream -------------------------------------------------------------

@pytest.fixture
async def two_nodes() -> AsyncIterator[tuple]:
    from dayfly.stores.jsqueue import JetStreamQueue
    prefix = f"t_{uuid.uuid4().hex[:12]}"
    conns = [await nats_connect(), await nats_connect()]
    nodes = [JetStreamQueue(nc.jetstream(), prefix, ack_wait_s=ACK_WAIT) for nc in conns]
    try:
        for node in nodes:
            await node.start()
        yield conns, nodes
    finally:
        await nodes[0].close()
        await nodes[1].delete()
        for nc in conns:
            if not nc.is_closed:
                await nc.close()


async def test_a_delivery_held_by_a_dead_node_goes_to_another(two_nodes):
    (nc1, _), (node1, node2) = two_nodes
    ev_id = await node1.put("fn", None, b"work")
    [ev] = await take_all(node1, 1)
    assert ev.id == ev_id
    assert await node2.take(10, 0.05) == []  # one consumer for all: node 2 does not get it
    # node 1 dies: its connection goes without an ack (kill -9), its heartbeats stop
    node1._heartbeat.cancel()
    await nc1.close()
    [again] = await take_all(node2, 1, wait_s=ACK_WAIT * 10)
    assert (again.id, again.payload, again.attempts) == (ev_id, b"work", 0)
    await node2.ack(again)
    assert await node2.depth() == 0


async def test_a_foreign_message_on_the_stream_is_dropped_not_redelivered(two_nodes):
    (nc1, _), (node1, _) = two_nodes
    await nc1.jetstream().publish(f"{node1.prefix}.events.fn", b"not an event")
    ev_id = await node1.put("fn", None, b"{}")
    [ev] = await take_all(node1, 1)
    assert ev.id == ev_id
    await node1.ack(ev)
    assert await node1.depth() == 0


async def test_a_long_delivery_stays_with_its_live_node(two_nodes):
    _, (node1, node2) = two_nodes
    await node1.put("fn", None, b"slow")
    [ev] = await take_all(node1, 1)
    # three ack_waits: without node 1's in_progress() heartbeats node 2 would get it
    assert await node2.take(10, ACK_WAIT * 3) == []
    await node1.ack(ev)
    assert await node2.take(10, ACK_WAIT * 1.5) == []


async def test_retry_counts_travel_to_the_other_node(two_nodes):
    _, (node1, node2) = two_nodes
    await node1.put("fn", None, b"{}")
    [ev] = await take_all(node1, 1)
    ev.attempts, ev.throttles = 2, 5
    await node1.retry(ev, 0.0)
    node1._heartbeat.cancel()
    await node1.close()  # node 1 takes no more: the retry is node 2's
    [again] = await take_all(node2, 1)
    assert (again.id, again.attempts, again.throttles) == (ev.id, 2, 5)
    await node2.ack(again)


# -- the dispatcher over each backend -------------------------------------------------------

class ScriptedScheduler:
    """Answers each invocation of an event with the next outcome of its script."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.calls: list[tuple[str, int]] = []  # (event id, throttled count it came with)

    async def invoke(self, spec, req):
        from dayfly.errors import TooManyRequests
        from dayfly.types import InvokeResult
        self.calls.append((req.request_id, req.throttled))
        outcome = self.script.pop(0) if self.script else "ok"
        if outcome == "throttle":
            raise TooManyRequests("at its concurrency limit")
        if outcome == "error":
            return InvokeResult(b'{"errorMessage": "no"}', error_type="Unhandled")
        return InvokeResult(b"{}")


async def dispatch(queue: Queue, script: list[str], ends: str) -> ScriptedScheduler:
    """Run the dispatcher over `queue` until one event has ended in `ends` (ack, dead_letter)."""
    from dayfly.control.event_config import EventConfig
    from dayfly.triggers.async_invoke import AsyncDispatcher

    class Configs:
        def get(self, function, qualifier):
            return EventConfig(retries=2)

    done = asyncio.Event()
    end = getattr(queue, ends)

    async def ended(*args):
        await end(*args)
        done.set()
    setattr(queue, ends, ended)
    scheduler = ScriptedScheduler(script)
    d = AsyncDispatcher(queue, scheduler, lambda fn, q: None, lambda fn, q=None: f"arn:{fn}",
                        Configs(), backoff_s=0.05)
    d.start()
    try:
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await d.close()
    return scheduler


async def test_the_dispatcher_acks_a_delivered_event(queue: Queue):
    ev_id = await queue.put("fn", None, b"{}")
    scheduler = await dispatch(queue, [], "ack")
    assert scheduler.calls == [(ev_id, 0)]
    assert await queue.depth() == 0


async def test_the_dispatcher_counts_throttles_apart_from_attempts(queue: Queue):
    ev_id = await queue.put("fn", None, b"{}")
    scheduler = await dispatch(queue, ["throttle", "error", "throttle", "error", "error"],
                               "dead_letter")
    # the first try and two retries ran the function; the throttled two did not count
    assert scheduler.calls == [(ev_id, 0), (ev_id, 1), (ev_id, 1), (ev_id, 2), (ev_id, 2)]
    [row] = await queue.dead("fn")
    assert (row["id"], row["attempts"], row["throttles"]) == (ev_id, 3, 2)
    assert await queue.depth() == 0
