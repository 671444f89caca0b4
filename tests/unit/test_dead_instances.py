"""An instance that ends while idle (killed from outside, or its process exited) is never handed
the next invocation, and an invocation it never read goes once to another instance: the channel
tells whether the instance read the last frame (a real socketpair), the pool drops a dead idle
instance, the scheduler retries (the in-memory stub backend)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from dayfly.runtime import protocol
from dayfly.sandbox.base import NotDelivered
from dayfly.sandbox.channel import InstanceChannel
from dayfly.sandbox.safe import SafeSandbox
from dayfly.scheduler.scheduler import Scheduler
from dayfly.testing.stub import StubBackend
from dayfly.types import FunctionSpec, InvokeRequest, Limits

INVOKE = protocol.encode(protocol.INVOKE, {"id": "r1"}, b"{}")


async def test_an_instance_that_ends_with_the_invoke_unread_did_not_read_it():
    host, inst = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = InstanceChannel(host)
    reply = chan.expect()
    chan.send(INVOKE)
    inst.close()  # ends with the INVOKE unread: the kernel answers the host's read ECONNRESET
    with pytest.raises(EOFError):
        await asyncio.wait_for(reply, 2)
    assert chan.short and chan.sent == 1


async def test_an_instance_that_read_the_invoke_and_then_ended_may_have_run_it():
    host, inst = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = InstanceChannel(host)
    reply = chan.expect()
    chan.send(INVOKE)
    got = b""
    while len(got) < len(INVOKE):
        got += inst.recv(65536)
    inst.close()
    with pytest.raises(EOFError):
        await asyncio.wait_for(reply, 2)
    assert not chan.short


async def test_a_frame_sent_after_the_end_never_reached_the_instance():
    host, inst = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = InstanceChannel(host)
    inst.close()  # the instance ended while idle; the host has not read the end of file yet
    chan.send(INVOKE)  # the write fails (EPIPE)
    with pytest.raises(EOFError):
        await asyncio.wait_for(chan.expect(), 2)
    assert chan.short and chan.sent == 1


def spec() -> FunctionSpec:
    return FunctionSpec(name="f", version="$LATEST", revision="r1", arn="arn:f", handler="h",
                        code_dir="/nonexistent", limits=Limits(timeout_s=2), isolation="stub")


def req() -> InvokeRequest:
    return InvokeRequest(request_id="r", payload=b"{}", invoked_arn="arn:f")


async def test_an_idle_instance_that_ends_leaves_the_pool_at_once():
    async def ok(_event, _req):
        return "ok"

    backend = StubBackend({"h": ok})
    sched = Scheduler({"stub": SafeSandbox(backend)})
    try:
        first = await sched.invoke(spec(), req())
        pool = sched.current[("f", "$LATEST")]
        [h] = pool.idle
        backend.end(h.id)  # killed from outside while idle
        await asyncio.sleep(0)  # the end is heard (a done callback)
        assert pool.idle == [] and pool.size == 0 and not h.alive
        second = await sched.invoke(spec(), req())
        assert first.ok and second.ok and second.cold and second.instance_id != h.id
        assert h.id not in backend.live  # reaped: what it held went back
    finally:
        await sched.close()


async def test_an_invocation_the_instance_never_read_runs_once_on_another():
    calls: list[str] = []

    async def flaky(_event, r):
        calls.append(r.request_id)
        if len(calls) <= failures:
            raise NotDelivered()
        return "ran"

    backend = StubBackend({"h": flaky})
    sched = Scheduler({"stub": SafeSandbox(backend)})
    try:
        failures = 1
        r = await sched.invoke(spec(), req())
        assert r.ok and json.loads(r.payload) == "ran" and len(calls) == 2
        assert backend.starts == 2  # the first instance is dead: a new one served it
        calls.clear()
        failures = 2  # never read twice: no third try, the caller gets the crash
        r = await sched.invoke(spec(), req())
        assert not r.ok and len(calls) == 2
        assert json.loads(r.payload)["errorType"] == "Runtime.ExitError"
    finally:
        await sched.close()
