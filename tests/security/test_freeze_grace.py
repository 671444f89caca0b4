"""An idle instance is frozen only after a short grace (linux tier, FREEZE_GRACE_S): routes and
function URLs get their answer through gateway/streaming.open_stream, whose caller writes the
response some loop turns after the result came; the freeze must not come before that write.

Uses test_idle_instances' pool (the escape battery's linux sandbox, a real instance).
"""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import pytest
import test_escape
from test_idle_instances import _frozen, _until, call, code, pool  # noqa: F401  (fixtures)

from dayfly.gateway.streaming import open_stream
from dayfly.sandbox.linux.backend import _slot
from dayfly.scheduler.pool import Pool
from dayfly.types import InvokeRequest

sandbox = test_escape.sandbox


class _Scheduler:
    """What open_stream calls: one invocation through the pool, as the scheduler makes it."""

    def __init__(self, instances: Pool) -> None:
        self.pool = instances

    async def invoke(self, spec, req: InvokeRequest, gone=None):
        h, _ = await self.pool.acquire()
        try:
            req.deadline_ms = int((time.time() + 10) * 1000)
            return await self.pool.sandbox.invoke(h, req, 10)
        finally:
            self.pool.release(h)


@pytest.mark.parametrize("sandbox", ["linux"], indirect=True)
async def test_a_route_answer_is_written_before_its_instance_is_frozen(pool):  # noqa: F811
    r, _ = await call(pool, op="threads")  # a warm instance, frozen once idle
    assert r.ok
    (h,) = pool.idle
    slot = _slot(h.inst)
    assert slot is not None, "the linux tier runs instances in cgroup slots"
    await _until(lambda: _frozen(h.inst.pid), "frozen")
    req = InvokeRequest(request_id=str(uuid.uuid4()), invoked_arn="arn",
                        payload=json.dumps({"op": "threads"}).encode())
    answer = await open_stream(SimpleNamespace(scheduler=_Scheduler(pool)), pool.spec, req)
    assert answer.result is not None and answer.result.ok and answer.body is None
    # here a route maps the result and writes its response: the instance is not frozen yet
    # (old code: frozen on the loop turn after the result, before open_stream returned)
    assert not slot.frozen
    await _until(lambda: _frozen(h.inst.pid), "frozen again once idle")
