"""Per-instance cgroups (memory, cpu, pids, freezer), v1 or v2, created ahead of time in a pool.

A slot is a cgroup (one directory per controller on v1, one on v2) with what joins it held
open (v1: each `tasks` file, written by the new process itself; v2: the directory, which the
zygote clones the instance into), so putting an instance in it needs no mkdir and no open on
the request path. Slots are reused after their instance has been reaped.

Idle instances are frozen (v1: the `freezer` hierarchy's `freezer.state`; v2: `cgroup.freeze`)
through a held fd, so freezing and thawing are one pwrite each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("dayfly.cgroups")

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids")
V1_FREEZER = "freezer"  # optional on v1: without its hierarchy, idle instances are not frozen
CPU_PERIOD_US = 100_000
MB_PER_VCPU = 1769  # Lambda's proportion: 1,769 MB of memory = one vCPU, linear
# the floor: below 442 MB, a quarter of a core (docs/security.md says why); DAYFLY_CPU_FLOOR
# raises it where a core is slow (the cgroup v2 tests run under an emulated CPU)
MIN_VCPU = float(os.environ.get("DAYFLY_CPU_FLOOR", "0.25"))


def version() -> int | None:
    """2 for the unified hierarchy, 1 for per-controller mounts, None if unusable."""
    if (ROOT / "cgroup.controllers").is_file():
        return 2
    if all((ROOT / c / "cgroup.procs").is_file() for c in V1_CONTROLLERS):
        return 1
    return None


@dataclass(slots=True)
class Slot:
    """One instance's cgroup; `index` also picks the instance's dedicated uid."""

    index: int
    dirs: list[Path]
    join_fds: list[int]
    events_fd: int = -1  # pids.events, read after every invocation (pread: no open, no path)
    freeze_fd: int = -1  # v1 freezer.state / v2 cgroup.freeze (-1: no freezer here)
    frozen: bool = False  # what was last written to freeze_fd (guarded by the event loop)
    oom_base: int = 0
    pids_base: int = 0
    memory_mb: int = 0
    extra: dict = field(default_factory=dict)


def delegated() -> str:
    """The cgroup an administrator delegated to dayfly (DAYFLY_CGROUP_PARENT: a path relative
    to the hierarchy root, e.g. `dayfly` or `user.slice/.../dayfly.scope`), or "" for the root.
    Without root this is the only way to cgroup limits; with root it keeps dayfly in a subtree."""
    return os.environ.get("DAYFLY_CGROUP_PARENT", "").strip("/")


def _parents(v: int, parent: str) -> list[Path]:
    rel = Path(parent) if parent else Path()
    return [ROOT / rel] if v == 2 else [ROOT / c / rel for c in V1_CONTROLLERS]


def freezing(parent: str = "") -> str:
    """What `dayfly doctor` says about freezing idle instances on this hierarchy."""
    freezer = ROOT / V1_FREEZER / parent
    if version() == 2 or ((freezer / "cgroup.procs").is_file() and os.access(freezer, os.W_OK)):
        return "idle instances frozen"
    return "idle instances not frozen (no writable v1 freezer hierarchy)"


def vcpus(memory_mb: int) -> float:
    """An instance's CPU limit in cores: Lambda's proportion to memory, with a floor."""
    return max(MIN_VCPU, memory_mb / MB_PER_VCPU)


def cpu_quota_us(memory_mb: int) -> int:
    """CPU time per CPU_PERIOD_US an instance with this much memory may use."""
    return max(1000, round(vcpus(memory_mb) * CPU_PERIOD_US))


class CgroupPool:
    """Slots under `<hierarchy>[/<parent>]/<name>/s<index>`; `prepare` makes them, `acquire`
    hands one out."""

    def __init__(self, name: str = "dayfly", parent: str = "") -> None:
        self.v = version()
        if self.v is None:
            raise OSError("no usable cgroup hierarchy (need v2, or v1 memory+cpu+pids)")
        self.name = name
        self.lock = threading.Lock()  # guards free, dirty, used, next_index (threads clean)
        self.free: list[Slot] = []
        self.used: dict[int, Slot] = {}
        self.dirty: list[Slot] = []  # retired, not yet emptied: `clean` makes them free
        self.next_index = 0
        self.bases = [p / name for p in _parents(self.v, parent)]
        # v1: a freezer hierarchy beside the others, if one is mounted and ours to write
        freezer = ROOT / V1_FREEZER / parent if self.v == 1 else None
        self.freezer_base = (freezer / name if freezer is not None
                             and (freezer / "cgroup.procs").is_file()
                             and os.access(freezer, os.W_OK) else None)
        self.keep_fd = self.freezer_dir_fd = -1
        # Neither way takes the write side of the kernel's global threadgroup lock (which
        # waits for an RCU grace period and stalls every fork and exit meanwhile). v1: the new
        # process writes "0" to `tasks` itself, the one migration without it. v2: the zygote
        # clones the instance straight into the slot (clone3 with CLONE_INTO_CGROUP and the
        # directory's fd; on kernels without it, it writes the pid to the slot's cgroup.procs).
        self.self_join = self.v == 1
        every = [*self.bases, *([self.freezer_base] if self.freezer_base else [])]
        remove_stale([b.parent for b in every], name.split("-")[0])
        for base in every:
            base.mkdir(exist_ok=True)
        if self.freezer_base is not None:
            # v1's freezer turns a kernel static key on when the first cgroup freezes and off
            # when the last thaws: each flip patches kernel text, ~100 us per write (measured).
            # An empty cgroup kept frozen holds the key on, so an instance's freeze or thaw
            # costs ~3.5 us instead (and the key's on-state is what any idle instance causes).
            keep = self.freezer_base / "keep"
            keep.mkdir(exist_ok=True)
            self.keep_fd = os.open(keep / "freezer.state", os.O_RDWR | os.O_CLOEXEC)
            os.pwrite(self.keep_fd, b"FROZEN", 0)
            # for zygotes: a v1-frozen instance keeps a SIGKILL pending until it thaws, so a
            # zygote that kills its instances because the platform went away (kill -9) must
            # thaw their slots itself (the slots' directories, relative to this fd)
            self.freezer_dir_fd = os.open(self.freezer_base, os.O_RDONLY | os.O_DIRECTORY
                                          | os.O_CLOEXEC)
        if self.v == 2:
            # A v2 cgroup that passes controllers on holds no processes itself (the root
            # excepted). A platform started inside its delegated cgroup (systemd's
            # Delegate=yes: the service's own cgroup) first moves into a leaf of its pool, the
            # way systemd and container runtimes do; the pool's base is then the common
            # ancestor of the platform and every slot, which the kernel requires to be
            # writable for each move (dayfly made it, so it is).
            parent_dir = self.bases[0].parent
            if parent_dir != ROOT and own() == parent_dir:
                leaf = self.bases[0] / "platform"
                leaf.mkdir(exist_ok=True)
                _write(leaf / "cgroup.procs", "0")
                log.info("moved the platform into %s (its delegated cgroup passes controllers "
                         "on to instances' cgroups, so it may hold no process itself)", leaf)
            for d in (parent_dir, self.bases[0]):
                _write(d / "cgroup.subtree_control", "+memory +pids +cpu")

    @classmethod
    def probe(cls, parent: str = "") -> tuple[bool, str]:
        v = version()
        if v is None:
            return False, "no usable cgroup hierarchy (need v2, or v1 memory+cpu+pids)"
        where = f"cgroup v{v}" + (f" (delegated: {parent})" if parent else "")
        for d in _parents(v, parent):
            if not os.access(d, os.W_OK):
                return False, f"{where}: {d} is not writable"
        if v == 2 and os.geteuid() != 0:
            # moving a process needs write access to the common ancestor of its old and new
            # cgroups: without root, that ancestor must be inside the delegated subtree
            mine, top = own(), _parents(v, parent)[0]
            if mine is None or not mine.is_relative_to(top):
                return False, (f"{where}: dayfly runs in the cgroup {mine or '(unknown)'}, "
                               f"outside {top}, and the kernel lets it move instances only "
                               "within a subtree it runs in: start it inside the delegated "
                               "cgroup (e.g. systemd-run --user -p Delegate=yes ...)")
        return True, where

    def refill(self, count: int) -> None:
        """Up to `count` free slots: retired ones emptied first, new ones for the rest."""
        self.clean()
        self.prepare(max(0, count - len(self.free)))

    def prepare(self, count: int) -> None:
        """Make `count` more free slots (blocking: call off the event loop)."""
        for _ in range(count):
            with self.lock:
                i = self.next_index
                self.next_index += 1
            dirs = [b / f"s{i}" for b in self.bases]
            if self.freezer_base is not None:
                dirs.append(self.freezer_base / f"s{i}")
            for d in dirs:
                d.mkdir(exist_ok=True)
            fds = self._join_fds(dirs)
            events = os.open((dirs[0] if self.v == 2 else dirs[2]) / "pids.events",
                             os.O_RDONLY | os.O_CLOEXEC)
            freeze = (os.open(dirs[0] / "cgroup.freeze", os.O_WRONLY | os.O_CLOEXEC)
                      if self.v == 2 else
                      os.open(dirs[3] / "freezer.state", os.O_RDWR | os.O_CLOEXEC)
                      if self.freezer_base is not None else -1)
            with self.lock:
                self.free.append(Slot(i, dirs, fds, events, freeze))

    def _join_fds(self, dirs: list[Path]) -> list[int]:
        """What an instance joins the slot through: v1 each `tasks` file, v2 the directory."""
        return [os.open(d / "tasks", os.O_WRONLY | os.O_CLOEXEC) if self.self_join else
                os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for d in dirs]

    def joined(self, slot: Slot) -> None:
        """Its instance (or spare) is in the slot: the join fds are closed until the slot is
        free again (`_empty` reopens them, off the request path). A live instance then holds 2
        descriptors of the platform's here instead of 6 (v1), which is what lets one platform
        keep thousands of idle instances within its open-files limit (issue 18)."""
        fds, slot.join_fds = slot.join_fds, []
        for fd in fds:
            os.close(fd)

    def acquire(self, memory_mb: int, pids: int) -> Slot:
        """A slot with these limits; creates one on the spot only if the pool ran dry.

        A slot last used with the same limits needs no writes at all (the common case: most
        functions keep their memory setting), so a start usually costs no cgroupfs I/O.
        """
        while True:
            with self.lock:
                slot = next((s for s in reversed(self.free)
                             if s.memory_mb == memory_mb and s.extra.get("pids") == pids), None)
                if slot is not None:
                    self.free.remove(slot)
                elif self.free:
                    slot = self.free.pop()
            if slot is not None:
                break
            if self.dirty:  # busy all along: empty a retired slot now rather than make one
                self.clean(1)
                continue
            log.warning("cgroup pool empty: creating a slot on the request path")
            self.prepare(1)
        with self.lock:
            self.used[slot.index] = slot
        if slot.memory_mb == memory_mb and slot.extra.get("pids") == pids:
            return slot
        limit = memory_mb * 1024 * 1024
        if self.v == 2:
            d = slot.dirs[0]
            _write(d / "memory.max", str(limit))
            _write(d / "memory.swap.max", "0", optional=True)
            _write(d / "pids.max", str(pids))
            _write(d / "cpu.weight", str(max(1, min(10000, memory_mb * 100 // MB_PER_VCPU))))
            _write(d / "cpu.max", f"{cpu_quota_us(memory_mb)} {CPU_PERIOD_US}")
        else:
            mem, cpu, pid = slot.dirs[:3]
            # v1 insists memory ≤ memory+swap at every step: lift the latter, set, lower it
            _write(mem / "memory.memsw.limit_in_bytes", "-1", optional=True)
            _write(mem / "memory.limit_in_bytes", str(limit))
            _write(mem / "memory.memsw.limit_in_bytes", str(limit), optional=True)
            _write(pid / "pids.max", str(pids))
            _write(cpu / "cpu.shares", str(max(2, memory_mb * 1024 // MB_PER_VCPU)))
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(cpu_quota_us(memory_mb)))
        slot.memory_mb = memory_mb
        slot.extra["pids"] = pids
        return slot

    def freeze(self, slot: Slot) -> None:
        """Stop every task of the slot where it is (one pwrite; the kernel finishes the job
        asynchronously: `frozen` tells when it is done)."""
        if slot.freeze_fd >= 0 and not slot.frozen:
            slot.frozen = True
            os.pwrite(slot.freeze_fd, b"1" if self.v == 2 else b"FROZEN", 0)

    def thaw(self, slot: Slot) -> None:
        """Let the slot's tasks run again (synchronous: they are runnable when this returns)."""
        if slot.frozen:
            slot.frozen = False
            os.pwrite(slot.freeze_fd, b"0" if self.v == 2 else b"THAWED", 0)

    def is_frozen(self, slot: Slot) -> bool:
        """Whether the kernel has finished freezing every task of the slot."""
        if slot.freeze_fd < 0:
            return False
        if self.v == 2:
            return _counter(slot.dirs[0] / "cgroup.events", "frozen") == 1
        return os.pread(slot.freeze_fd, 32, 0).strip() == b"FROZEN"

    def retire(self, slot: Slot) -> None:
        """Its processes are gone; `clean` returns it to the pool later (cheap: no I/O)."""
        with self.lock:
            self.used.pop(slot.index, None)
            self.dirty.append(slot)

    def clean(self, limit: int | None = None) -> int:
        """Empty retired slots (all, or up to `limit`) and make them free again; how many
        (blocking: v1's force_empty reclaims what the last instance left charged, slab
        included, a fraction of a millisecond of CPU per slot: call off the event loop, when
        idle)."""
        with self.lock:
            n = len(self.dirty) if limit is None else limit
            dirty, self.dirty = self.dirty[:n], self.dirty[n:]
        for slot in dirty:
            self._empty(slot)
        with self.lock:
            self.free.extend(dirty)
        return len(dirty)

    def _empty(self, slot: Slot) -> None:
        # what the last instance left charged (page cache it read, slab) would count against
        # the next one's limit
        if self.v == 1:
            _write(slot.dirs[0] / "memory.force_empty", "0", optional=True)
            _write(slot.dirs[0] / "memory.max_usage_in_bytes", "0", optional=True)
        else:  # memory.reclaim: kernel 5.19 and later
            with contextlib.suppress(OSError, ValueError):
                left = int((slot.dirs[0] / "memory.current").read_text())
                if left:
                    _write(slot.dirs[0] / "memory.reclaim", str(left), optional=True)
        if not slot.join_fds:
            slot.join_fds = self._join_fds(slot.dirs)
        # a slot whose instance died frozen (only our writes freeze it) must not freeze the next
        self.thaw(slot)
        # the counters only ever grow: what they read now is the next instance's zero
        slot.oom_base = self.oom_kills(slot)
        slot.pids_base = self.pids_refused(slot)

    def oom_kills(self, slot: Slot) -> int:
        name = "memory.events" if self.v == 2 else "memory.oom_control"
        return _counter(slot.dirs[0] / name, "oom_kill")

    def pids_refused(self, slot: Slot) -> int:
        """Forks the pids limit refused since the slot was made (on the warm path: ~1 us)."""
        try:
            data = os.pread(slot.events_fd, 256, 0)
        except OSError:
            return 0
        for line in data.split(b"\n"):
            if line.startswith(b"max "):
                return int(line[4:])
        return 0

    def peak_kb(self, slot: Slot) -> int:
        d = slot.dirs[0]
        name = "memory.peak" if self.v == 2 else "memory.max_usage_in_bytes"
        try:
            return int((d / name).read_text().split()[0]) // 1024
        except (OSError, ValueError, IndexError):
            return 0

    def close(self) -> None:
        """Remove every slot (call after every instance is gone)."""
        for slot in [*self.free, *self.dirty, *self.used.values()]:
            with contextlib.suppress(OSError):  # a frozen slot's tasks could not die (v1)
                self.thaw(slot)
            for fd in [*slot.join_fds, slot.events_fd, slot.freeze_fd]:
                if fd >= 0:
                    os.close(fd)
            for d in slot.dirs:
                try:
                    d.rmdir()
                except OSError as exc:
                    log.warning("could not remove cgroup %s: %s", d, exc)
        self.free.clear()
        self.dirty.clear()
        self.used.clear()
        if self.keep_fd >= 0:
            os.pwrite(self.keep_fd, b"THAWED", 0)
            os.close(self.keep_fd)
            os.close(self.freezer_dir_fd)
            self.keep_fd = self.freezer_dir_fd = -1
            with contextlib.suppress(OSError):
                (self.freezer_base / "keep").rmdir()  # type: ignore[operator]
        for base in [*self.bases, *([self.freezer_base] if self.freezer_base else [])]:
            with contextlib.suppress(OSError):
                base.rmdir()


def own() -> Path | None:
    """This process's cgroup directory on the v2 hierarchy (None if there is none)."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return ROOT / line[3:].strip().lstrip("/")
    except OSError:
        pass
    return None


def remove_stale(parents: list[Path], prefix: str) -> None:
    """Remove `<prefix>-<pid>` pools left behind by a platform process that has exited (the
    v2 leaf the platform ran in cannot be removed before it exits; kill -9 leaves slots)."""
    for parent in parents:
        for base in parent.glob(f"{prefix}-*"):
            pid = base.name.rpartition("-")[2]
            if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
                continue
            for slot in base.iterdir():
                if slot.is_dir():
                    with contextlib.suppress(OSError):  # still has processes: leave it alone
                        _write(slot / "freezer.state", "THAWED", optional=True)  # v1's keep
                        slot.rmdir()
            try:
                base.rmdir()
                log.info("removed stale cgroups %s", base)
            except OSError:
                pass


def _write(path: Path, value: str, optional: bool = False) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        if not optional:
            raise


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return 0
