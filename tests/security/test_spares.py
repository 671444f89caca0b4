"""Spare instances (linux tier): prepared and confined ahead of demand, then claimed by a start.
A claimed spare must be exactly as confined as an instance cloned on demand."""

from __future__ import annotations

import asyncio
import json
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
