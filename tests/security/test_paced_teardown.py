"""Paced teardown (issue 18): retired idle instances are killed a few at a time, each next one
when an earlier one has been reaped, so a scale to zero of thousands never makes them all die
at once. Observed at the zygote's channel: KILLs sent, DIEDs received."""

from __future__ import annotations

import asyncio

import pytest

from dayfly.platform import available_backends
from dayfly.runtime import protocol
from dayfly.sandbox.safe import SafeSandbox
from dayfly.types import FunctionSpec, Limits

LIMIT = 3
COUNT = 14


@pytest.fixture(params=["linux", "process"])
async def sandbox(request, tmp_path):
    cls = available_backends().get(request.param)
    if cls is None:
        pytest.skip(f"the {request.param} tier is not available on this machine")
    sb = SafeSandbox(cls(tmp_path / "data"))
    yield sb
    await sb.close()


def fn(tmp_path, tier: str) -> FunctionSpec:
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    return FunctionSpec(name="tear", version="$LATEST", revision="r", arn="arn",
                        handler="handler.handler", code_dir=str(code), isolation=tier,
                        limits=Limits(memory_mb=128, timeout_s=5))


class Outstanding:
    """Counts, on one zygote's channel, instances sent a KILL and not yet reported DIED."""

    def __init__(self, zygote) -> None:
        self.killed: set[int] = set()
        self.most = 0
        self.kills = 0
        kill, handle = zygote.kill, zygote._handle

        async def counted_kill(pid: int) -> None:
            self.killed.add(pid)
            self.kills += 1
            self.most = max(self.most, len(self.killed))
            await kill(pid)

        def counted_handle(kind: int, meta: dict, fds=None) -> None:
            if kind == protocol.DIED:
                self.killed.discard(meta["pid"])
            handle(kind, meta, fds)

        zygote.kill, zygote._handle = counted_kill, counted_handle


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_scale_to_zero_kills_at_most_the_limit_at_once(sandbox, tmp_path):
    backend = sandbox.backend
    spec = fn(tmp_path, backend.name)
    handles = [await sandbox.start(spec, f"i{i}") for i in range(COUNT)]
    pids = [h.inst.pid for h in handles]
    watch = Outstanding(next(iter(backend.zygotes.values())))
    backend.teardown.limit = LIMIT
    for h in handles:  # idle: retired, as a scale to zero does
        await sandbox.stop(h)
    assert watch.kills <= LIMIT  # the rest wait for a death
    await asyncio.wait_for(backend.teardown.drain(), 60)
    assert watch.kills == COUNT
    assert watch.most == LIMIT  # paced, but several at a time
    assert not any(alive(pid) for pid in pids)


async def test_closing_the_backend_waits_for_the_paced_teardown(sandbox, tmp_path):
    backend = sandbox.backend
    spec = fn(tmp_path, backend.name)
    handles = [await sandbox.start(spec, f"i{i}") for i in range(COUNT)]
    pids = [h.inst.pid for h in handles]
    watch = Outstanding(next(iter(backend.zygotes.values())))
    backend.teardown.limit = LIMIT
    for h in handles:
        await sandbox.stop(h)
    await sandbox.close()  # as the platform stops: instances retired first, then the backend
    assert watch.kills == COUNT and watch.most <= LIMIT
    assert not any(alive(pid) for pid in pids)
