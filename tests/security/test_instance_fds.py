"""Descriptors a live linux-tier instance costs the platform (issue 18: 5,000 idle instances
within the platform's open-files limit): its channel and its slot's freezer and pids.events,
not the fds it joined its cgroup through (v1: one `tasks` file per hierarchy), which are open
only while the slot is free. A reused slot is joined again."""

from __future__ import annotations

import asyncio
import os

import pytest

from dayfly.platform import available_backends
from dayfly.sandbox.safe import SafeSandbox
from dayfly.types import FunctionSpec, Limits

COUNT = 12


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


def held_under(dirs: list, pool=None) -> list[str]:
    """This process's open fds that point into one of `dirs` (or at it); with `pool`, only the
    fds that pool holds (another backend alive in this test process uses the same cgroup
    names: they are named after the process)."""
    mine = None
    if pool is not None:
        mine = {fd for s in [*pool.free, *pool.dirty, *pool.used.values()]
                for fd in [*s.join_fds, s.events_fd, s.freeze_fd]}
    out = []
    for fd in os.listdir("/proc/self/fd"):
        if mine is not None and int(fd) not in mine:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if any(target == str(d) or target.startswith(f"{d}/") for d in dirs):
            out.append(target)
    return out


def slot_of(pid: int) -> set[str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.rstrip().rpartition("/")[2] for line in f if "/dayfly-" in line}


async def test_a_live_instance_holds_no_join_fd_and_a_reused_slot_is_joined(linux, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    spec = FunctionSpec(name="fds", version="$LATEST", revision="r", arn="arn",
                        handler="handler.handler", code_dir=str(code), isolation="linux",
                        limits=Limits(memory_mb=128, timeout_s=5))
    pool = linux.backend.cgroups
    handles = [await linux.start(spec, f"i{i}") for i in range(COUNT)]
    for h in handles:
        slot = next(s for s in pool.used.values() if f"s{s.index}" in slot_of(h.inst.pid))
        held = held_under(slot.dirs, pool)
        # its freezer.state and pids.events only: no `tasks` file, no directory
        assert sorted(os.path.basename(p) for p in held) == ["freezer.state", "pids.events"] \
            if pool.v == 1 else ["cgroup.freeze", "pids.events"], held
    mine = set().union(*(slot_of(h.inst.pid) for h in handles))  # (not the spare's)
    old = {f"s{s.index}": s for s in pool.used.values() if f"s{s.index}" in mine}
    assert len(old) == COUNT
    for h in handles:
        await linux.stop(h)
    await asyncio.wait_for(linux.backend.teardown.drain(), 60)
    for _ in range(1000):  # retired once its instance is reaped, emptied when starts pause
        await asyncio.to_thread(pool.clean)
        if set(old) <= {f"s{s.index}" for s in pool.free}:
            break
        await asyncio.sleep(0.01)
    for slot in old.values():  # free again: joinable again
        held = [os.path.basename(p) for p in held_under(slot.dirs, pool)]
        assert held.count("tasks") == len(slot.dirs) if pool.v == 1 else \
            str(slot.dirs[0]) in held_under(slot.dirs, pool), held
    again = [await linux.start(spec, f"j{i}") for i in range(COUNT)]
    in_old = [h for h in again if slot_of(h.inst.pid) & set(old)]
    assert len(in_old) >= COUNT - 2, [slot_of(h.inst.pid) for h in again]  # (a spare's aside)
