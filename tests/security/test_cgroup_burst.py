"""A burst of starts beyond the cgroup pool (issue 18): no slot is made on the event loop (a
few milliseconds of cgroupfs work each, which every other start, invocation and request would
wait behind); starts wait for the pool's refill, made in a thread with their limits already
written, and every instance is in a slot of its own."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dayfly.platform import available_backends
from dayfly.sandbox.safe import SafeSandbox
from dayfly.types import FunctionSpec, Limits


@pytest.fixture
async def linux(tmp_path):
    cls = available_backends().get("linux")
    if cls is None:
        pytest.skip("the linux tier is not available on this machine")
    sb = SafeSandbox(cls(tmp_path / "data"))
    if sb.backend.cgroups is None:
        await sb.close()
        pytest.skip("no cgroups here (rootless without a delegated cgroup)")
    yield sb
    await sb.close()


async def test_a_burst_past_the_pool_makes_no_slot_on_the_event_loop(linux, tmp_path, caplog):
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    spec = FunctionSpec(name="burst", version="$LATEST", revision="r", arn="arn",
                        handler="handler.handler", code_dir=str(code), isolation="linux",
                        limits=Limits(memory_mb=256, timeout_s=5))
    await linux.stop(await linux.start(spec, "zygote"))  # the zygote is up
    pool = linux.backend.cgroups
    count = len(pool.free) + len(pool.dirty) + 16  # more than the pool holds
    caplog.set_level(logging.WARNING, logger="dayfly.cgroups")
    handles = await asyncio.gather(*(linux.start(spec, f"b{i}") for i in range(count)))
    assert not [r for r in caplog.records if "request path" in r.getMessage()]
    slots = set()
    for h in handles:
        with open(f"/proc/{h.inst.pid}/cgroup") as f:
            mine = {line.strip().rpartition("/")[2] for line in f if "memory:" in line
                    or line.startswith("0::")} - {""}
        slots |= mine
        slot = next(s for s in pool.used.values() if f"s{s.index}" in mine)
        assert slot.memory_mb == 256  # limited for this function
    assert len(slots) == count  # one each
