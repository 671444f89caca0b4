"""Spare instances (linux tier): prepared and confined ahead of demand, then claimed by a start.
A claimed spare must be exactly as confined as an instance cloned on demand."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import time
import uuid

import pytest

from dayfly.platform import available_backends
from dayfly.sandbox.safe import SafeSandbox
from dayfly.types import FunctionSpec, InvokeRequest, Limits

PROBE = """
import os
def handler(event, context):
    status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines()
                  if ":\\t" in l)
    return {"pid": os.getpid(), "uid": os.getuid(), "procs": sorted(
        p for p in os.listdir("/proc") if p.isdigit()), "seccomp": status["Seccomp"].strip(),
        "capeff": status["CapEff"].strip(), "nnp": status["NoNewPrivs"].strip(),
        "env": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}
"""


@pytest.fixture
async def linux(tmp_path):
    cls = available_backends().get("linux")
    if cls is None:
        pytest.skip("the linux tier is not available on this machine")
    sb = SafeSandbox(cls(tmp_path / "data"))
    yield sb
    await sb.close()


async def probe(sb, h) -> dict:
    req = InvokeRequest(request_id=str(uuid.uuid4()), payload=b"{}", invoked_arn="arn")
    req.deadline_ms = int((time.time() + 5) * 1000)
    return json.loads((await sb.invoke(h, req, 5)).payload)


async def test_a_claimed_spare_is_confined_like_any_instance(linux, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text(textwrap.dedent(PROBE))
    spec = FunctionSpec(name="sparefn", version="$LATEST", revision="r", arn="arn",
                        handler="handler.handler", code_dir=str(code), isolation="linux",
                        limits=Limits(memory_mb=128, timeout_s=5))
    backend = linux.backend
    first = await linux.start(spec, "first")
    for _ in range(200):  # the zygote's first spare is prepared in the background
        if backend.spares:
            break
        await asyncio.sleep(0.01)
    assert backend.spares, "no spare was prepared"
    second = await linux.start(spec, "second")
    assert backend.spares_claimed == 1
    a, b = await probe(linux, first), await probe(linux, second)
    for view in (a, b):
        assert view["pid"] == 1 and view["uid"] == 1000 and view["procs"] == ["1"]
        assert view["seccomp"] == "2" and int(view["capeff"], 16) == 0 and view["nnp"] == "1"
    assert b["env"].endswith("]second")  # the spare took the claiming instance's identity
    await linux.stop(first)
    await linux.stop(second)


READER = """
def handler(event, context):
    with open("/var/task/blob", "rb") as f:
        while f.read(1 << 20):
            pass
    return {}
"""


def _usage(pool, slot) -> int:
    name = "memory.current" if pool.v == 2 else "memory.usage_in_bytes"
    return int((slot.dirs[0] / name).read_text())


async def test_a_retired_slot_is_emptied_once_starts_pause_and_before_reuse(linux, tmp_path):
    # the page cache an instance read stays charged to its cgroup after it exits; emptying it
    # costs CPU the next cold starts need, so it waits for a pause, but a slot is never handed
    # out again before it was emptied (the next instance gets its whole memory limit)
    from dayfly.sandbox.linux.backend import QUIET_S, _slot

    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text(textwrap.dedent(READER))
    with open(code / "blob", "wb") as f:  # out of the page cache: the instance's read
        f.write(b"\1" * (24 << 20))          # charges it to the instance's cgroup
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    spec = FunctionSpec(name="reader", version="$LATEST", revision="r", arn="arn",
                        handler="handler.handler", code_dir=str(code), isolation="linux",
                        limits=Limits(memory_mb=128, timeout_s=5))
    pool = linux.backend.cgroups
    h = await linux.start(spec, "reader")
    await probe(linux, h)
    slot = _slot(h.inst)
    assert _usage(pool, slot) > 16 << 20
    await linux.stop(h)
    for _ in range(100):
        if slot in pool.dirty:
            break
        await asyncio.sleep(0.005)
    assert slot in pool.dirty and slot not in pool.free
    assert _usage(pool, slot) > 16 << 20  # not emptied on the spot
    await asyncio.sleep(QUIET_S * 3)
    assert slot in pool.free and slot not in pool.dirty
    assert _usage(pool, slot) < 4 << 20
