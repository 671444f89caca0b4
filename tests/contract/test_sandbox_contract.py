"""The contract every sandbox backend must pass, run over every tier available here.

A backend joins by being listed in `dayfly.platform.available_backends()`; tiers that the
machine cannot run are skipped (and fail in strict CI mode if they should be there).
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import uuid
from pathlib import Path

import pytest

from dayfly.platform import BACKENDS, available_backends
from dayfly.sandbox.base import InitFailed
from dayfly.sandbox.safe import SafeSandbox
from dayfly.types import FunctionSpec, InvokeRequest, Limits

TIERS = [cls.name for cls in BACKENDS]

HANDLER = '''
import os, sys, time, json, logging
INIT_PID = os.getpid()
print("init ran")
def handler(event, context):
    op = event.get("op")
    if op == "env":
        return dict(os.environ)
    if op == "print":
        print("to stdout"); print("to stderr", file=sys.stderr); logging.warning("to logging")
        return None
    if op == "sleep":
        time.sleep(event["s"]); return "woke"
    if op == "segv":
        import ctypes; ctypes.string_at(0)
    if op == "exit":
        os._exit(7)
    if op == "raise":
        raise KeyError("missing")
    if op == "alloc":
        blob = bytearray(event["mb"] * 1024 * 1024); return len(blob)
    if op == "big":
        return "x" * event["n"]
    if op == "ctx":
        return {"rid": context.aws_request_id, "left": context.get_remaining_time_in_millis(),
                "arn": context.invoked_function_arn, "pid": os.getpid(), "init_pid": INIT_PID}
    return {"echo": event}
'''


def write_code(root: Path, files: dict[str, str]) -> str:
    d = root / uuid.uuid4().hex
    d.mkdir(parents=True)
    for name, text in files.items():
        (d / name).write_text(textwrap.dedent(text))
    return str(d)


@pytest.fixture(params=TIERS)
async def sandbox(request, tmp_path):
    cls = available_backends().get(request.param)
    if cls is None:
        pytest.skip(f"isolation tier {request.param!r} is not available on this machine")
    sb = SafeSandbox(cls(tmp_path / "data"))
    sb.tier = request.param  # type: ignore[attr-defined]
    yield sb
    await sb.close()


def mkspec(sandbox, code_dir: str, **kw) -> FunctionSpec:
    base = dict(name="fn", version="$LATEST", revision="r", arn="arn:aws:lambda:x:0:function:fn",
                handler="handler.handler", code_dir=code_dir, isolation=sandbox.tier,
                limits=Limits(memory_mb=128, timeout_s=3, max_output_bytes=1024 * 1024))
    base.update(kw)
    return FunctionSpec(**base)


async def call(sandbox, h, event, timeout=3.0):
    req = InvokeRequest(request_id=str(uuid.uuid4()), payload=json.dumps(event).encode(),
                        invoked_arn="arn:aws:lambda:x:0:function:fn:live")
    import time

    req.deadline_ms = int((time.time() + timeout) * 1000)
    return await sandbox.invoke(h, req, timeout)


@pytest.fixture
def code(tmp_path) -> str:
    return write_code(tmp_path / "code", {"handler.py": HANDLER})


async def test_invoke_round_trip_and_init_once(sandbox, code):
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    r1 = await call(sandbox, h, {"a": [1, 2]})
    assert r1.ok and json.loads(r1.payload) == {"echo": {"a": [1, 2]}}
    ctx = json.loads((await call(sandbox, h, {"op": "ctx"})).payload)
    assert ctx["pid"] == ctx["init_pid"]
    assert ctx["arn"].endswith(":live") and 0 < ctx["left"] <= 3000
    assert h.inst.init_ms > 0 and h.inst.fork_ms >= 0
    await sandbox.stop(h)


async def test_logs_are_captured_per_invocation(sandbox, code):
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    r = await call(sandbox, h, {"op": "print"})
    text = "".join(r.logs)
    assert "to stdout" in text and "to stderr" in text and "to logging" in text
    assert "init ran" not in text  # init output is not billed to the first invocation
    r2 = await call(sandbox, h, {})
    assert "to stdout" not in "".join(r2.logs)
    await sandbox.stop(h)


async def test_function_error_is_a_result(sandbox, code):
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    r = await call(sandbox, h, {"op": "raise"})
    err = json.loads(r.payload)
    assert r.error_type == "Unhandled" and err["errorType"] == "KeyError"
    assert any("handler.py" in line for line in err["stackTrace"])
    assert (await call(sandbox, h, {})).ok  # the instance survives its handler's exception
    await sandbox.stop(h)


@pytest.mark.parametrize("op,reason", [("segv", "signal: segmentation fault"),
                                       ("exit", "exit status 7")])
async def test_crash_is_reported_and_instance_retired(sandbox, code, op, reason):
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    r = await call(sandbox, h, {"op": op})
    err = json.loads(r.payload)
    assert err["errorType"] == "Runtime.ExitError" and reason in err["errorMessage"]
    assert not h.alive
    h2 = await sandbox.start(mkspec(sandbox, code), "i2")
    assert (await call(sandbox, h2, {})).ok
    await sandbox.stop(h2)


async def test_timeout_kills(sandbox, code):
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    pid = h.inst.pid
    r = await call(sandbox, h, {"op": "sleep", "s": 10}, timeout=0.5)
    assert "Task timed out after 0.50 seconds" in json.loads(r.payload)["errorMessage"]
    assert not h.alive
    if sandbox.tier == "process":
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            await asyncio.sleep(0.02)
        assert not os.path.exists(f"/proc/{pid}")


@pytest.mark.parametrize("source,etype,needle", [
    ("def handler(e, c):\n    return (\n", "Runtime.UserCodeSyntaxError", "line 2"),
    ("import not_a_module_xyz\n", "Runtime.ImportModuleError", "not_a_module_xyz"),
    ("x = 1\n", "Runtime.HandlerNotFound", "handler"),
    ("raise RuntimeError('bad init')\n", "RuntimeError", "bad init"),
])
async def test_init_errors(sandbox, tmp_path, source, etype, needle):
    code = write_code(tmp_path / "code", {"handler.py": source})
    with pytest.raises(InitFailed) as info:
        await sandbox.start(mkspec(sandbox, code), "i1")
    assert info.value.error["errorType"] == etype
    assert needle in info.value.error["errorMessage"]


async def test_missing_module(sandbox, tmp_path):
    code = write_code(tmp_path / "code", {"other.py": "x = 1\n"})
    with pytest.raises(InitFailed) as info:
        await sandbox.start(mkspec(sandbox, code), "i1")
    assert info.value.error["errorType"] == "Runtime.ImportModuleError"


async def test_environment_is_scrubbed_and_lambda_vars_set(sandbox, code, monkeypatch):
    monkeypatch.setenv("DAYFLY_TEST_HOST_SECRET", "leak")
    h = await sandbox.start(mkspec(sandbox, code, env=(("MINE", "1"),)), "i1")
    env = json.loads((await call(sandbox, h, {"op": "env"})).payload)
    assert "DAYFLY_TEST_HOST_SECRET" not in env
    assert env["MINE"] == "1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["_HANDLER"] == "handler.handler"
    await sandbox.stop(h)


async def test_memory_limit(sandbox, code):
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    r = await call(sandbox, h, {"op": "alloc", "mb": 400})
    err = json.loads(r.payload)
    assert r.error_type == "Unhandled"
    assert err["errorType"] in ("Runtime.OutOfMemory", "Runtime.ExitError")
    assert "out of memory (limit 128 MiB)" in err["errorMessage"] or "signal" in err["errorMessage"]
    h2 = await sandbox.start(mkspec(sandbox, code), "i2")
    assert json.loads((await call(sandbox, h2, {"op": "alloc", "mb": 16})).payload) == 16 << 20
    await sandbox.stop(h2)


async def test_output_cap(sandbox, code):
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    r = await call(sandbox, h, {"op": "big", "n": 2 * 1024 * 1024})
    assert json.loads(r.payload)["errorType"] == "Function.ResponseSizeTooLarge"
    await sandbox.stop(h)


async def test_stop_is_idempotent_and_invoke_after_stop_is_an_error(sandbox, code):
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    await sandbox.stop(h)
    await sandbox.stop(h)
    r = await call(sandbox, h, {})
    assert r.error_type == "Unhandled"


async def test_stats_and_close_leave_nothing_running(sandbox, code):
    hs = [await sandbox.start(mkspec(sandbox, code), f"i{i}") for i in range(3)]
    for h in hs:
        assert (await call(sandbox, h, {})).ok
    stats = [sandbox.stats(h) for h in hs]
    if sandbox.tier == "process":
        assert all(s.pss_kb > 0 for s in stats)
    pids = [h.inst.pid for h in hs]
    await sandbox.close()
    if sandbox.tier == "process":
        await asyncio.sleep(0.2)
        assert not any(os.path.exists(f"/proc/{p}") for p in pids)


async def test_async_handler(sandbox, tmp_path):
    code = write_code(tmp_path / "code", {"handler.py": '''
        import asyncio
        async def handler(event, context):
            await asyncio.sleep(0.01)
            return {"async": True, "n": event["n"]}
    '''})
    h = await sandbox.start(mkspec(sandbox, code), "i1")
    for n in range(3):
        assert json.loads((await call(sandbox, h, {"n": n})).payload) == {"async": True, "n": n}
    await sandbox.stop(h)


async def test_memory_settings_can_grow_and_shrink_between_starts(sandbox, code):
    """Reused resources (cgroup slots) must accept any new limit, larger or smaller."""
    for mb in (128, 512, 128, 1024):
        spec = mkspec(sandbox, code, limits=Limits(memory_mb=mb, timeout_s=3))
        h = await sandbox.start(spec, f"m{mb}")
        assert (await call(sandbox, h, {})).ok
        await sandbox.stop(h)
        await asyncio.sleep(0.05)  # let the slot be reaped and returned
