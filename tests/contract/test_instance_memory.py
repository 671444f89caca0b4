"""An idle instance's own memory, over the tiers whose instances are host processes.

What a page of the zygote costs an instance depends on whether it wrote to it: shared pages
are paid once per zygote, copied ones (`Private_Dirty` in /proc/PID/smaps_rollup) by every
instance. At 2,000 idle instances each MiB of those is 2 GiB, so a change that makes every
instance copy much more of its zygote (SPECIFICATION.md, issue 3: about 2.0 MiB measured)
fails here; the bound leaves a quarter of headroom, so noise does not.
"""

from __future__ import annotations

import asyncio
import statistics

import pytest

from dayfly.platform import available_backends
from dayfly.sandbox.safe import SafeSandbox
from dayfly.types import FunctionSpec, Limits

LIMIT_KIB = 2560  # 2.5 MiB: about 2.0 measured; 2.7-2.9 before the zygote rehearsed (issue 3)
HANDLER = "import json, os\n\ndef handler(event, context):\n    return {'pid': os.getpid()}\n"


def private_dirty_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    raise AssertionError(f"no Private_Dirty for {pid}")


@pytest.fixture(params=["process", "linux"])
async def sandbox(request, tmp_path):
    cls = available_backends().get(request.param)
    if cls is None:
        pytest.skip(f"isolation tier {request.param!r} is not available on this machine")
    sb = SafeSandbox(cls(tmp_path / "data"))
    yield sb, request.param
    await sb.close()


async def test_an_idle_instance_copies_little_of_its_zygote(sandbox, tmp_path):
    sb, tier = sandbox
    code, deps = tmp_path / "code", tmp_path / "deps"  # deployed functions have both
    code.mkdir()
    deps.mkdir()
    (code / "handler.py").write_text(HANDLER)
    spec = FunctionSpec(name="small", version="$LATEST", revision="r", arn="arn",
                        handler="handler.handler", code_dir=str(code), deps_dir=str(deps),
                        isolation=tier, limits=Limits(memory_mb=128, timeout_s=5))
    handles = [await sb.start(spec, f"i{i}") for i in range(6)]  # spares and plain forks
    await asyncio.sleep(0.2)
    own = [private_dirty_kib(h.inst.pid) for h in handles]
    for h in handles:
        await sb.stop(h)
    assert statistics.median(own) < LIMIT_KIB, f"{tier}: Private_Dirty KiB per instance {own}"
