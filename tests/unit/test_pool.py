"""Scheduler and pool behaviour, driven through the in-memory stub backend."""

from __future__ import annotations

import asyncio
import json

import pytest

from dayfly.errors import TooManyRequests
from dayfly.sandbox.safe import SafeSandbox
from dayfly.scheduler.scheduler import Scheduler
from dayfly.testing.stub import StubBackend
from dayfly.types import FunctionSpec, InvokeRequest, Limits


def spec(**kw) -> FunctionSpec:
    base = dict(name="f", version="$LATEST", revision="r1", arn="arn:f", handler="h",
                code_dir="/nonexistent", limits=Limits(timeout_s=2), isolation="stub")
    base.update(kw)
    return FunctionSpec(**base)


def req(payload: object = None) -> InvokeRequest:
    return InvokeRequest(request_id="r", payload=json.dumps(payload or {}).encode(),
                         invoked_arn="arn:f")


async def echo(event, _req):
    await asyncio.sleep(event.get("sleep", 0))
    return event


@pytest.fixture
async def env():
    backend = StubBackend({"h": echo}, start_delay_s=0.05)
    sched = Scheduler({"stub": SafeSandbox(backend)}, max_queue=4, queue_timeout_s=1.0)
    yield backend, sched
    await sched.close()


async def test_warm_instance_is_reused(env):
    backend, sched = env
    s = spec()
    first = await sched.invoke(s, req({"a": 1}))
    second = await sched.invoke(s, req({"a": 2}))
    assert first.cold and not second.cold
    assert json.loads(second.payload) == {"a": 2}
    assert backend.starts == 1


async def test_simultaneous_first_requests_share_starts():
    backend = StubBackend({"h": echo}, start_delay_s=0.2)
    sched = Scheduler({"stub": SafeSandbox(backend)}, max_queue=100, queue_timeout_s=5)
    try:
        s = spec(max_instances=64)
        results = await asyncio.gather(*(sched.invoke(s, req()) for _ in range(10)))
        assert all(r.ok for r in results)
        pool = sched.current[("f", "$LATEST")]
        # 10 simultaneous first requests of a fast handler: single-flight starts, not 10 racing
        assert backend.starts <= pool.max_parallel_starts * 2 < 10
    finally:
        await sched.close()


async def test_limit_then_bounded_queue_then_429(env):
    backend, sched = env  # max_queue=4, queue timeout 1 s
    s = spec(max_instances=1)
    calls = [sched.invoke(s, req({"sleep": 0.15})) for _ in range(5)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    throttled = [r for r in results if isinstance(r, TooManyRequests)]
    ok = [r for r in results if not isinstance(r, BaseException) and r.ok]
    assert len(throttled) == 1 and "queued requests" in throttled[0].message
    assert len(ok) == 4  # one instance served the queue in turn
    assert backend.starts == 1


async def test_queue_wait_times_out_with_429(env):
    _, sched = env
    s = spec(max_instances=1)
    running = asyncio.ensure_future(sched.invoke(s, req({"sleep": 1.5})))
    await asyncio.sleep(0.1)
    with pytest.raises(TooManyRequests, match="waited"):
        await sched.invoke(s, req())
    assert (await running).ok


async def test_reserved_zero_throttles_immediately(env):
    _, sched = env
    with pytest.raises(TooManyRequests):
        await sched.invoke(spec(max_instances=0), req())


async def test_init_failure_fails_all_waiters_with_one_start():
    backend = StubBackend({}, start_delay_s=0.05)
    sched = Scheduler({"stub": SafeSandbox(backend)})
    try:
        results = await asyncio.gather(*(sched.invoke(spec(), req()) for _ in range(6)))
        assert all(r.error_type == "Unhandled" for r in results)
        assert all(json.loads(r.payload)["errorType"] == "Runtime.HandlerNotFound"
                   for r in results)
        assert backend.starts <= 2
    finally:
        await sched.close()


async def test_idle_instances_are_reaped_but_min_warm_kept(env):
    backend, sched = env
    s = spec(max_instances=4, min_warm=1, idle_timeout_s=0.0)
    await asyncio.gather(*(sched.invoke(s, req({"sleep": 0.1})) for _ in range(3)))
    pool = sched.current[("f", "$LATEST")]
    assert len(pool.idle) >= 2
    import time

    await sched.reap(time.monotonic() + 1)
    assert len(pool.idle) == 1
    assert len(backend.live) == 1


async def test_new_revision_drains_old_pool(env):
    _backend, sched = env
    old = spec(revision="r1")
    running = asyncio.ensure_future(sched.invoke(old, req({"sleep": 0.3})))
    await asyncio.sleep(0.1)
    new = spec(revision="r2")
    sched.deploy(new)
    assert (await sched.invoke(new, req())).ok
    assert (await running).ok  # in-flight work on the old revision finishes
    await asyncio.sleep(0.05)
    old_pool = next(p for p in sched.draining if p.spec.revision == "r1")
    assert old_pool.size == 0  # and its instance was stopped afterwards


async def test_timeout_kills_and_replaces_instance(env):
    backend, sched = env
    s = spec(limits=Limits(timeout_s=0.2))
    r = await sched.invoke(s, req({"sleep": 1}))
    assert r.error_type == "Unhandled"
    assert "Task timed out after 0.20 seconds" in json.loads(r.payload)["errorMessage"]
    assert len(backend.killed) == 1
    assert (await sched.invoke(s, req())).cold


class GatedStarts(StubBackend):
    """Each start waits until the test lets it finish; counts starts in flight."""

    def __init__(self) -> None:
        super().__init__({"h": echo})
        self.gates: list[asyncio.Event] = []
        self.in_flight = 0
        self.most = 0

    async def start(self, spec, instance_id):
        gate = asyncio.Event()
        self.gates.append(gate)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await gate.wait()
            return await super().start(spec, instance_id)
        finally:
            self.in_flight -= 1


async def settle() -> None:
    for _ in range(20):  # let every ready callback and task step run
        await asyncio.sleep(0)


async def test_min_warm_starts_at_most_max_parallel_starts_at_a_time():
    from dayfly.scheduler.pool import Pool

    backend = GatedStarts()
    pool = Pool(spec(max_instances=50, min_warm=10), SafeSandbox(backend), max_parallel_starts=3)
    try:
        pool.ensure_warm()
        await settle()
        assert backend.in_flight == 3  # not 10 at once (issue 18: 5,000 at once ran out of fds)
        for _ in range(10):
            next(g for g in backend.gates if not g.is_set()).set()
            await settle()
            assert backend.in_flight <= 3
        assert len(pool.idle) == 10 and backend.most == 3 and backend.starts == 10
    finally:
        await pool.close()


async def test_a_burst_of_busy_requests_gets_an_instance_each_past_max_parallel_starts():
    from dayfly.scheduler.pool import Pool

    release = asyncio.Event()

    async def hold(event, _req):
        await release.wait()  # every instance stays busy until all requests have one
        return event

    backend = GatedStarts()
    backend.handlers["h"] = hold
    sb = SafeSandbox(backend)
    pool = Pool(spec(max_instances=50), sb, max_parallel_starts=3, max_queue=50)

    async def one() -> None:
        h, _ = await pool.acquire()
        try:
            await sb.invoke(h, req(), 5)
        finally:
            pool.release(h)

    calls = [asyncio.ensure_future(one()) for _ in range(10)]
    try:
        for _ in range(10):  # each start, when let finish, leaves room for the next
            await settle()
            assert 1 <= backend.in_flight <= 3
            next(g for g in backend.gates if not g.is_set()).set()
        await settle()
        assert backend.starts == 10 and len(pool.busy) == 10  # one each, all at once
        release.set()
        await asyncio.gather(*calls)
    finally:
        release.set()
        await pool.close()
