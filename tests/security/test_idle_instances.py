"""Instances that keep working after they return: children left behind retire the instance,
idle instances are frozen, CPU follows the memory setting, and the gVisor tier caps tasks.

Runs over real tiers with the escape battery's fixtures (`sandbox` is linux and gvisor).
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import test_escape
from test_escape import attack, mkspec

from dayfly.sandbox.gvisor import host_tasks, task_budget
from dayfly.scheduler.pool import Pool
from dayfly.types import Limits

sandbox = test_escape.sandbox  # the battery's fixture: every isolating tier available

linux_only = pytest.mark.parametrize("sandbox", ["linux"], indirect=True)

HANDLER = r'''
import os, threading, time

def _spin():
    while True:
        pass

def handler(event, context):
    op = event["op"]
    if op == "bomb":  # children that outlive the invocation, as many as the limit allows
        n = 0
        try:
            for _ in range(event.get("max", 10000)):
                if os.fork() == 0:
                    time.sleep(120)
                    os._exit(0)
                n += 1
        except OSError as e:
            return {"forked": n, "error": e.__class__.__name__}
        return {"forked": n, "error": None}
    if op == "zombies":  # children that exited and were never waited for
        pids = []
        try:
            for _ in range(100):
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                pids.append(pid)
        except OSError:
            pass
        for pid in pids:  # exited for sure, but left unreaped (WNOWAIT)
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        return {"zombies": len(pids), "pid": os.getpid()}
    if op == "fork":  # an ordinary child, waited for
        pids = []
        for _ in range(event.get("n", 4)):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        return {"forked": len(pids), "pid": os.getpid()}
    if op == "spin":  # daemon threads that keep spinning after the return
        for _ in range(event["threads"]):
            threading.Thread(target=_spin, daemon=True).start()
        return threading.active_count()
    if op == "escape":  # a grandchild in a session of its own: outside the instance's group
        pid = os.fork()
        if pid == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(120)
            os._exit(0)
        os.waitpid(pid, 0)
        return len([p for p in os.listdir("/proc") if p.isdigit()])
    if op == "threads":
        return threading.active_count()
    if op == "procs":  # live processes (a killed one may linger a moment as a zombie)
        live = []
        for p in os.listdir("/proc"):
            try:
                if p.isdigit() and open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[0] != "Z":
                    live.append(int(p))
            except OSError:
                pass
        return sorted(live)
    return None
'''


@pytest.fixture
def code(tmp_path) -> str:
    d = tmp_path / "code" / uuid.uuid4().hex
    d.mkdir(parents=True)
    (d / "handler.py").write_text(textwrap.dedent(HANDLER))
    return str(d)


async def call(pool: Pool, **event):
    """One invocation through the pool, as the scheduler makes it: acquire, invoke, release."""
    h, _ = await pool.acquire()
    try:
        r, out = await attack(pool.sandbox, h, **event)
    finally:
        pool.release(h)
    return r, out


@pytest.fixture
async def pool(sandbox, code):
    # a generous wait for a start: the cgroup v2 run's emulated CPU starts zygotes slowly
    p = Pool(mkspec(sandbox, code), sandbox, queue_timeout_s=120)
    yield p
    await p.close()


def _cgroup_dir(pid: int, controller: str) -> Path:
    """The cgroup directory of `pid` that holds `controller`'s files (v1 or v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return Path("/sys/fs/cgroup", controller, path.lstrip("/"))
    v2 = next(line for line in lines if line.startswith("0::"))
    return Path("/sys/fs/cgroup", v2[3:].lstrip("/"))


def _frozen(pid: int) -> bool:
    d = _cgroup_dir(pid, "freezer")
    if (d / "freezer.state").exists():
        return (d / "freezer.state").read_text().strip() == "FROZEN"
    if not (d / "cgroup.events").exists():  # v1 with the instance in no freezer cgroup
        return False
    events = dict(line.split() for line in (d / "cgroup.events").read_text().splitlines())
    return events.get("frozen") == "1"


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of the whole process (every thread), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


async def _until(check, what: str, timeout: float = 10.0) -> None:
    """Wait for a state the kernel reaches asynchronously (bounded, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not {what} after {timeout:.0f} s"
        await asyncio.sleep(0.01)


async def test_fork_bomb_leftovers_retire_the_instance_and_the_next_invoke_forks(pool):
    # linux: the instance's pids limit; gvisor: the sandbox's task budget, shared
    cap = 32 if pool.sandbox.tier == "linux" else task_budget(pool.spec)
    r, out = await call(pool, op="bomb", max=400)  # old code: all 400 forked
    assert out["error"] == "BlockingIOError" and 0 < out["forked"] < cap, out
    r2, out2 = await call(pool, op="fork")  # a fresh instance: the bomb's children are gone
    assert r2.ok and out2["forked"] == 4, out2
    assert r2.instance_id != r.instance_id and r.retire
    assert any("left child processes running" in line for line in r.logs), r.logs


@linux_only
async def test_zombies_are_reaped_and_the_warm_instance_keeps_forking(pool):
    r, out = await call(pool, op="zombies")  # up to the pids limit, all left as zombies
    assert r.ok and out["zombies"] >= 20, out
    r2, out2 = await call(pool, op="fork")
    assert r2.ok and out2["forked"] == 4, out2
    assert r2.instance_id == r.instance_id and out2["pid"] == out["pid"]  # reaped, kept warm


@linux_only
async def test_idle_instance_is_frozen_and_uses_no_cpu(pool):
    r, threads = await call(pool, op="spin", threads=8)
    assert r.ok and threads == 9
    (h,) = pool.idle
    pid = h.inst.pid
    await _until(lambda: _frozen(pid), "frozen")
    before = _cpu_ticks(pid)
    await asyncio.sleep(0.3)  # eight spinning threads would take ~60 ticks; frozen: none
    assert _cpu_ticks(pid) == before
    r2, alive = await call(pool, op="threads")  # thawed for the invoke: the threads are back
    assert r2.ok and alive == 9 and r2.instance_id == r.instance_id
    await _until(lambda: _frozen(pid), "frozen again")


@linux_only
@pytest.mark.parametrize(("memory_mb", "vcpus"), [(128, 0.25), (1769, 1), (3538, 2)])
async def test_cpu_quota_follows_the_memory_setting(sandbox, code, memory_mb, vcpus):
    # 128 MB: the floor, a quarter of a core unless DAYFLY_CPU_FLOOR says more (the v2 VM)
    floor = float(os.environ.get("DAYFLY_CPU_FLOOR", "0.25"))
    quota_us = round(max(floor, vcpus) * 100_000)
    spec = mkspec(sandbox, code, limits=Limits(memory_mb=memory_mb, timeout_s=10, tmp_mb=16,
                                               pids=32))
    h = await sandbox.start(spec, f"cpu-{memory_mb}")
    try:
        d = _cgroup_dir(h.inst.pid, "cpu")
        if (d / "cpu.max").exists():
            assert (d / "cpu.max").read_text().split() == [str(quota_us), "100000"]
        else:
            assert int((d / "cpu.cfs_quota_us").read_text()) == quota_us
            assert int((d / "cpu.cfs_period_us").read_text()) == 100_000
    finally:
        await sandbox.stop(h)


gvisor_only = pytest.mark.parametrize("sandbox", ["gvisor"], indirect=True)


def _sandbox_pids(pool: Pool) -> Path:
    """The host cgroup (pids controller) runsc put the function's gVisor sandbox in."""
    (zygote,) = pool.sandbox.backend.zygotes.values()
    rel = json.loads((zygote.bundle / "config.json").read_text())["linux"]["cgroupsPath"]
    v1 = Path("/sys/fs/cgroup/pids") / rel.lstrip("/")
    return v1 if v1.exists() else Path("/sys/fs/cgroup") / rel.lstrip("/")


@gvisor_only
async def test_gvisor_fork_bomb_is_capped_and_nothing_is_left_after_scale_to_zero(pool):
    r, out = await call(pool, op="bomb", max=400)  # old code: all 400 forked
    assert out["error"] == "BlockingIOError" and out["forked"] < task_budget(pool.spec), out
    assert any("process limit reached" in line for line in r.logs), r.logs
    cg = _sandbox_pids(pool)  # the host's backstop: every host task of the sandbox counts
    assert int((cg / "pids.max").read_text()) == host_tasks(pool.spec)
    assert int((cg / "pids.current").read_text()) <= host_tasks(pool.spec)
    await pool.scale_to_zero()
    await _only_zygote_and_one_instance(pool)  # the bomb's children are gone


async def _only_zygote_and_one_instance(pool: Pool) -> None:
    """Ask an instance of the sandbox until it sees only the zygote and itself (SIGKILL is
    delivered asynchronously; a process killed a moment ago may not have exited yet)."""
    deadline = time.monotonic() + 10
    while len(procs := (await call(pool, op="procs"))[1]) != 2:
        assert time.monotonic() < deadline, procs
        await asyncio.sleep(0.05)


@linux_only
async def test_a_frozen_instance_dies_with_its_zygote_even_if_the_host_cannot_thaw_it(pool):
    """kill -9 of the platform: nobody on the host thaws anything, the zygote sees its channel
    close and kills its instances; a v1-frozen one would keep that SIGKILL pending for ever."""
    await call(pool, op="spin", threads=2)
    (h,) = pool.idle
    pid = h.inst.pid
    await _until(lambda: _frozen(pid), "frozen")
    (zygote,) = pool.sandbox.backend.zygotes.values()
    await zygote.close()  # the host's side of the channel, and nothing else, goes away
    await _until(lambda: not os.path.exists(f"/proc/{pid}"), "gone")


@gvisor_only
async def test_gvisor_processes_that_leave_their_group_are_gone_after_scale_to_zero(pool):
    _, seen = await call(pool, op="escape")
    assert seen == 3  # the zygote, the instance and the grandchild it left behind
    (h,) = pool.idle
    (zygote,) = pool.sandbox.backend.zygotes.values()
    death = zygote.death(h.inst.pid)
    await pool.scale_to_zero()
    await asyncio.wait_for(death, 10)  # the sandbox has no instance now
    await _only_zygote_and_one_instance(pool)
