"""The `linux` backend: one zygote per function sandbox, instances cloned into fresh namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...background import spawn
from ...runtime import jail
from ...types import FunctionSpec, InvokeRequest, InvokeResult
from .. import lang, opt
from ..base import Instance, InstanceDied
from ..process import ZygoteBackend, instance_env
from ..runtime_api import shells
from ..zygote import BOOT, ZYGOTE_ENV, ZygoteClient, exit_reason
from . import endpoints
from .cgroups import CgroupPool, Slot, delegated, freezing
from .egress import EgressRelay, parse_allow
from .netns import RELAY_PORT, Netns, NetnsPool

log = logging.getLogger("dayfly.linux")

UID_BASE = 200_000  # instance uids/gids on the host: UID_BASE + cgroup slot index
QUIET_S = 0.2  # retired cgroup slots are emptied after this long without a start
# Idle instances are frozen (their cgroup's freezer) between invocations, as Lambda freezes an
# execution environment; DAYFLY_FREEZE_IDLE=0 turns it off (benchmarks/freeze.py compares)
FREEZE_IDLE = os.environ.get("DAYFLY_FREEZE_IDLE", "1") != "0"
# how long an instance is idle before it is frozen: by then the reply is written even where it
# goes out some loop turns after the result (routes and function URLs answer through
# gateway/streaming.open_stream), and an instance invoked again at once is neither frozen nor
# thawed in between (benchmarks/http_routes.py)
FREEZE_GRACE_S = 0.002
TASK, DEPS, RUNTIME = "/var/task", "/var/deps", "/opt/dayfly"  # /opt: the layers (opt.py)
ETC = {
    "/etc/passwd": "root:x:0:0::/:/sbin/nologin\nsbx:x:1000:1000::/tmp:/sbin/nologin\n",
    "/etc/group": "root:x:0:\nsbx:x:1000:\n",
    "/etc/hosts": endpoints.HOSTS,  # and the function's declared names (endpoints.py)
    # names resolve from /etc/hosts only: a sandbox has no DNS (what it declared is there)
    "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}
# Public, read-only parts of the host every Python needs: shared libraries, CA certificates,
# time zones. Nothing else of the host is mounted.
SYSTEM_PATHS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/etc/ssl/certs",
                "/usr/share/ca-certificates", "/usr/share/zoneinfo", "/etc/localtime")


class LinuxBackend(ZygoteBackend):
    """Namespaces, cgroups, no capabilities, seccomp; see docs/security.md for the steps."""

    name = "linux"
    weak = False
    cgroup_prefill = 32
    function_s3: tuple[str, int] | None = None  # where relays reach the S3 endpoint (platform)

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.roots = Path(data_dir) / "roots"
        self.roots.mkdir(parents=True, exist_ok=True)
        # Rootless (docs/security.md): every namespace still, owned by a user namespace the
        # zygote makes itself; no dedicated uids, and cgroups only where one was delegated,
        # else memory and processes are bounded by rlimits (RLIMIT_AS, and RLIMIT_NPROC
        # counted per instance user namespace)
        self.rootless = os.geteuid() != 0
        self.cgroups: CgroupPool | None = None
        self.netns: NetnsPool | None = None
        parent = delegated()
        if not self.rootless or (parent and CgroupPool.probe(parent)[0]):
            self.cgroups = CgroupPool(f"dayfly-{os.getpid()}", parent)
            self.cgroups.prepare(self.cgroup_prefill)
        if not self.rootless:
            self.netns = NetnsPool()
        else:  # instances run as this uid: a stored object's fd could be reopened for writing
            self.no_bindings = ("the rootless linux tier offers no bucket bindings (instances "
                                "share the platform's uid); use the S3 endpoint")
        self.relays: dict[str, EgressRelay] = {}
        self._refilling: asyncio.Future | None = None
        # zygote key -> the spare child its zygote prepared (at most one per zygote)
        self.spares: dict[str, Spare] = {}
        self._preparing: set[str] = set()
        self._spare_ids = 0
        self._last_reserve = 0.0
        self._cleaning: asyncio.Task | None = None
        self.spares_claimed = 0
        self.langs = lang.Langs(Path(data_dir))  # one staged interpreter per runtime
        self.freeze_idle = FREEZE_IDLE

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = jail.supported()
        if not ok:
            return False, why
        parent = delegated()
        if os.geteuid() != 0:
            if not jail.namespaces_work():
                return False, ("not root, and the kernel refuses unprivileged user namespaces "
                               "(kernel.unprivileged_userns_clone or user.max_user_namespaces)")
            cg_ok, cg = CgroupPool.probe(parent) if parent else (False, "")
            limits = (f"limits by {cg}, {freezing(parent)}" if cg_ok else
                      "memory and processes bounded by rlimits (no cgroup delegated: "
                      "DAYFLY_CGROUP_PARENT)" + (f" [{cg}]" if parent else ""))
            return True, ("rootless: unprivileged user namespaces, seccomp; "
                          f"{limits}; all instances share your uid")
        ok, why = CgroupPool.probe(parent)
        if not ok:
            return False, why
        if not jail.namespaces_work():
            return False, "the kernel refuses new user/pid/mount/net namespaces"
        return True, f"namespaces, seccomp, {why}, {freezing(parent)}"

    def zygote_key(self, spec: FunctionSpec) -> str:
        parts = [spec.runtime, spec.code_dir, spec.deps_dir or "", ",".join(spec.network),
                 ",".join(spec.files), spec.name, spec.s3_endpoint, ",".join(spec.layers)]
        return "linux|" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    async def new_zygote(self, spec: FunctionSpec, key: str) -> ZygoteClient:
        # what is the function's own (and the interpreter) at neutral paths, as layers; public
        # system paths and declared `files` at their own paths (docs/security.md, Z4)
        lg = await asyncio.to_thread(self.langs.get, spec.runtime)
        layers = [*lg.layers, (str(self.runtime_root), RUNTIME), (spec.code_dir, TASK)]
        if spec.layers:  # below the runtime copy, which it holds a mount point for
            merged = await asyncio.to_thread(opt.merged, self.data_dir, spec.layers)
            layers.insert(len(lg.layers), (str(merged), opt.OPT))
        if spec.deps_dir:
            layers.append((spec.deps_dir, DEPS))
        binds = [(p, p) for p in SYSTEM_PATHS if os.path.exists(p)]
        binds += [(p, p) for p in spec.files] + shells(spec.runtime)
        # each declared destination: a door at its address in every instance's namespace
        # (added to its lo when not on loopback); declared names in its /etc/hosts
        eps = endpoints.plan(spec.network, reserved=("127.0.0.1", RELAY_PORT))
        cfg: dict[str, Any] = {
            "root": str(self.roots / key.split("|")[1]), "layers": layers, "binds": binds,
            "masks": lg.masks, "files": {**ETC, "/etc/hosts": endpoints.hosts_file(eps)},
            "symlinks": {"/lib": "usr/lib", "/lib64": "usr/lib64", "/bin": "usr/bin"},
            # Z9: the zygote that serves starts inside, from these neutral paths only
            "exec": {"python": lg.python, "boot": BOOT.format(root=RUNTIME),
                     "env": {**ZYGOTE_ENV, **lg.env}}}
        if spec.network or spec.s3_endpoint:
            # each instance's namespace gets a listening socket for the relay (step I1a);
            # the node's own S3 endpoint is reachable for declared `buckets` (S3 only there)
            cfg["relay_port"] = RELAY_PORT
            cfg["egress"] = [[e.bind, e.port] for e in eps]
            cfg["lo_addrs"] = sorted({e.bind for e in eps if not e.on_loopback})
            node = parse_allow([spec.s3_endpoint]) if spec.s3_endpoint else set()
            self.relays[key] = EgressRelay(spec.name, parse_allow(list(spec.network)), node,
                                           self.function_s3,
                                           {(e.bind, e.port): e.upstream for e in eps})
        thaw: tuple[int, ...] = ()
        if self.cgroups is not None and self.cgroups.freezer_dir_fd >= 0:  # v1 (cgroups.py)
            cfg["thaw_dir_fd"] = self.cgroups.freezer_dir_fd
            thaw = (self.cgroups.freezer_dir_fd,)
        if self.rootless:  # the zygote makes its namespaces itself
            cfg["rootless"] = True
            return ZygoteClient(key, self.runtime_root, extra={"jail": cfg}, pass_fds=thaw)
        assert self.netns is not None
        ns: Netns = await self.netns.take()
        cfg["netns_fd"] = ns.fd
        zygote = ZygoteClient(key, self.runtime_root, extra={"jail": cfg},
                              pass_fds=(ns.fd, *thaw))
        zygote.cleanup = ns  # type: ignore[attr-defined]
        return zygote

    async def zygote_started(self, spec: FunctionSpec, key: str, zygote: ZygoteClient) -> None:
        ns = getattr(zygote, "cleanup", None)
        if ns is not None:  # the zygote holds its own reference to the namespace now
            ns.close()
            zygote.cleanup = None  # type: ignore[attr-defined]
        self._keep_spare(spec)  # runs once the zygote is registered

    async def _lease(self, key: str, zygote: ZygoteClient, pid: int, slot: Slot | None) -> Lease:
        """What an instance holds: its cgroup slot, and the relay serving its namespace."""
        if slot is not None and self.cgroups is not None:
            self.cgroups.joined(slot)  # the child has the join fds it needs: ours are closed
        lease = Lease(slot)
        doors = zygote.doors.pop(pid, [])
        relay = self.relays.get(key)
        if doors and relay is not None:
            lease.doors, lease.relay = doors, relay
            for door in doors:
                await relay.attach(door)
        else:
            for door in doors:
                door.close()
        return lease

    async def forked(self, spec: FunctionSpec, zygote: ZygoteClient, pid: int,
                     token: object) -> object:
        if isinstance(token, Lease):  # a claimed spare: leased when it was prepared
            return token
        return await self._lease(self.zygote_key(spec), zygote, pid, token)  # type: ignore[arg-type]

    # -- spares: one confined child per zygote, prepared ahead of demand ------------------------

    def _keep_spare(self, spec: FunctionSpec) -> None:
        key = self.zygote_key(spec)
        spare = self.spares.get(key)
        if spare is not None and spare.zygote is not self.zygotes.get(key):
            del self.spares[key]  # a stopped zygote's: it gives its slot back when reaped
            spare = None
        if spare is None and key not in self._preparing:
            self._preparing.add(key)
            spawn(self._prepare_spare(key, spec))

    async def _prepare_spare(self, key: str, spec: FunctionSpec) -> None:
        zygote = self.zygotes.get(key)
        slot = None
        try:
            if zygote is None or zygote.dead:
                return
            ids, fds, slot = self._ids_and_slot(spec)
            self._spare_ids += 1
            pid = await zygote.prepare_spare(f"spare-{self._spare_ids}", {
                **ids, "tmp_mb": spec.limits.tmp_mb}, fds)
            lease = await self._lease(key, zygote, pid, slot)
        except Exception as exc:  # no spare: starts take the ordinary path
            log.warning("could not prepare a spare instance for %s: %s", spec.name, exc)
            if slot is not None:
                self.unreserve(Lease(slot))
            return
        finally:
            self._preparing.discard(key)
        spare = Spare(pid, lease, _limits(spec), zygote)
        spawn(self._forget_spare_when_dead(key, spare))
        if zygote.dead or self.zygotes.get(key) is not zygote:
            await self._drop_spare(spare)
            return
        self.spares[key] = spare

    async def _forget_spare_when_dead(self, key: str, spare: Spare) -> None:
        """A spare that dies unclaimed (its zygote stopped: ZygoteClient.close resolves every
        death) gives its slot back, unless a start took it (the start gives it back then)."""
        await spare.zygote.death(spare.pid)
        if self.spares.get(key) is spare:
            del self.spares[key]
        if not spare.claimed:
            self.unreserve(spare.lease)

    async def _drop_spare(self, spare: Spare) -> None:
        """Kill a spare nobody will claim; its slot comes back once it is reaped."""
        await spare.zygote.kill(spare.pid)

    def fork_spec(self, spec: FunctionSpec, instance_id: str) -> dict:
        env = instance_env(spec, instance_id)
        env["LAMBDA_TASK_ROOT"] = TASK
        env["HOME"] = "/tmp"
        if spec.network or spec.s3_endpoint:
            proxy = f"http://127.0.0.1:{RELAY_PORT}"
            env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy)
        out = {
            "handler": spec.handler, "code_dir": TASK, "deps_dir": DEPS if spec.deps_dir else None,
            "sdk_dir": lang.sdk.SDK,
            "layer_paths": opt.python_paths(opt.OPT, spec.runtime) if spec.layers else [],
            "env": env, "memory_mb": spec.limits.memory_mb,
            "max_output_bytes": spec.limits.max_output_bytes,
            "rlimit_as": self.cgroups is None, "tmp_mb": spec.limits.tmp_mb, "kind": spec.kind,
        }
        if self.cgroups is None:
            out["nproc"] = spec.limits.pids
        return out

    def _ids_and_slot(self, spec: FunctionSpec) -> tuple[dict, tuple[int, ...], Slot | None]:
        """The host ids an instance is mapped to and the cgroup it joins (rootless: the
        zygote's own id, which is the only one its user namespace has, and no cgroup)."""
        if self.cgroups is None:
            return {"uid": 0, "gid": 0}, (), None
        slot = self.cgroups.acquire(spec.limits.memory_mb, spec.limits.pids)
        if len(self.cgroups.free) < self.cgroup_prefill // 4:
            self._refill_cgroups()
        uid = 0 if self.rootless else UID_BASE + slot.index
        ids = {"uid": uid, "gid": uid, "cg": "self" if self.cgroups.self_join else "into",
               "slot": slot.index}
        return ids, tuple(slot.join_fds), slot

    def reserve(self, spec: FunctionSpec,
                zygote: ZygoteClient) -> tuple[dict, tuple[int, ...], object]:
        self._last_reserve = time.monotonic()
        key = self.zygote_key(spec)
        spare = self.spares.get(key)
        if spare is not None and spare.zygote is zygote:  # only ever its own zygote's child
            del self.spares[key]
            self._keep_spare(spec)  # the next one, prepared off the request path
            if spare.limits == _limits(spec) and not zygote.dead:
                spare.claimed = True  # its lease is the instance's now
                self.spares_claimed += 1
                return {"spare": spare.pid}, (), spare.lease
            spawn(self._drop_spare(spare))  # prepared for other limits: not usable
        return self._ids_and_slot(spec)

    def _refill_cgroups(self) -> None:
        assert self.cgroups is not None
        if self._refilling is None or self._refilling.done():
            self._refilling = asyncio.ensure_future(
                asyncio.to_thread(self.cgroups.refill, self.cgroup_prefill))

    def unreserve(self, token: object) -> None:
        if isinstance(token, Lease):
            token.close()
            token = token.slot
        if token is None:  # rootless: no cgroup was taken
            return
        assert isinstance(token, Slot) and self.cgroups is not None
        self.cgroups.retire(token)
        if self._cleaning is None or self._cleaning.done():
            self._cleaning = spawn(self._clean_when_quiet())

    async def _clean_when_quiet(self) -> None:
        """Empty retired cgroup slots once no start has been asked for in a while: the CPU it
        takes (v1 force_empty reclaims slab too) would otherwise compete with the starts of a
        burst (measured: ~0.3 ms of CPU per slot, on the same cores as the cold start that
        follows a scale-down). Never on the event loop."""
        assert self.cgroups is not None
        while self.cgroups.dirty:
            await asyncio.sleep(QUIET_S)
            if time.monotonic() - self._last_reserve >= QUIET_S:
                await asyncio.to_thread(self.cgroups.clean)

    def explain_death(self, inst: Instance, info: dict) -> InstanceDied:
        slot = _slot(inst)
        if (isinstance(slot, Slot) and self.cgroups is not None
                and self.cgroups.oom_kills(slot) > slot.oom_base):
            return InstanceDied(f"out of memory (limit {slot.memory_mb} MiB)",
                                "Runtime.OutOfMemory", info.get("maxrss", 0))
        return InstanceDied(exit_reason(info), max_rss_kb=info.get("maxrss", 0))

    def peak_kb(self, inst: Instance) -> int:
        """The instance cgroup's peak (v2 memory.peak, v1 max_usage_in_bytes); 0 rootless."""
        slot = _slot(inst)
        return self.cgroups.peak_kb(slot) if slot is not None and self.cgroups else 0

    async def start(self, spec: FunctionSpec, instance_id: str) -> Instance:
        inst = await super().start(spec, instance_id)
        self._freeze_soon(inst)  # what its init left running stops until it is first invoked
        return inst

    async def invoke(self, inst: Instance, req: InvokeRequest) -> InvokeResult:
        lease = inst.backend_state.token  # type: ignore[attr-defined]  # a _State
        slot = _slot(inst)
        if isinstance(lease, Lease) and lease.freezing is not None:
            lease.freezing.cancel()  # reused before its freeze ran
            lease.freezing = None
        if slot is not None and slot.frozen:
            self.cgroups.thaw(slot)  # type: ignore[union-attr]  # a slot implies the pool
        result = await super().invoke(inst, req)
        if isinstance(slot, Slot) and self.cgroups is not None:
            refused = self.cgroups.pids_refused(slot)
            if refused > slot.pids_base:
                slot.pids_base = refused
                result.logs.append(f"dayfly: process limit reached ({inst.spec.limits.pids} "
                                   "processes and threads); new ones were refused\n")
            # not while others run on it (concurrency > 1): the last to end freezes it
            if not result.retire and not getattr(inst.backend_state.chan,  # type: ignore[attr-defined]
                                                 "calls", None):
                self._freeze_soon(inst)
        return result

    def _freeze_soon(self, inst: Instance) -> None:
        """Freeze the instance once it has been idle FREEZE_GRACE_S, off the response path;
        the next invoke thaws first."""
        lease = inst.backend_state.token  # type: ignore[attr-defined]  # a _State
        if self.freeze_idle and isinstance(lease, Lease) and lease.slot is not None:
            lease.freezing = asyncio.get_running_loop().call_later(FREEZE_GRACE_S,
                                                                   self._freeze_idle, inst)

    def _freeze_idle(self, inst: Instance) -> None:
        lease = inst.backend_state.token  # type: ignore[attr-defined]  # a _State
        # not once it is being killed, nor once the backend closes (its zygotes kill every
        # instance): a v1-frozen task would keep its SIGKILL pending
        if (isinstance(lease, Lease) and lease.live and lease.slot is not None
                and self.freeze_idle):
            lease.freezing = None
            with contextlib.suppress(OSError):
                self.cgroups.freeze(lease.slot)  # type: ignore[union-attr]

    async def retire(self, inst: Instance) -> None:
        slot = _slot(inst)
        if inst.spec.kind == "asgi" and isinstance(slot, Slot) and self.cgroups is not None:
            lease = inst.backend_state.token  # type: ignore[attr-defined]  # a _State
            if isinstance(lease, Lease) and lease.freezing is not None:
                lease.freezing.cancel()
                lease.freezing = None
            if slot.frozen:
                self.cgroups.thaw(slot)  # its lifespan shutdown runs once it hears the hang-up
        await super().retire(inst)

    async def kill(self, inst: Instance) -> None:
        lease = inst.backend_state.token  # type: ignore[attr-defined]  # a _State
        if isinstance(lease, Lease):
            lease.live = False
            if lease.slot is not None and self.cgroups is not None:
                # v1 holds a frozen task's SIGKILL until it thaws; v2 would kill it anyway
                with contextlib.suppress(OSError):
                    self.cgroups.thaw(lease.slot)
        await super().kill(inst)

    def pids_refused(self, inst: Instance) -> int:
        slot = _slot(inst)
        if not isinstance(slot, Slot) or self.cgroups is None:
            return 0
        return self.cgroups.pids_refused(slot) - slot.pids_base

    async def maintain(self) -> None:
        await super().maintain()
        for key in [k for k in self.relays if k not in self.zygotes and k not in self._starting]:
            await self.relays.pop(key).close()
        if self.cgroups is not None and len(self.cgroups.free) < self.cgroup_prefill // 2:
            self._refill_cgroups()

    async def close(self) -> None:
        self.freeze_idle = False  # what is still scheduled to freeze stays thawed
        if self.cgroups is not None:  # the zygotes' SIGKILLs must reach frozen instances
            for slot in list(self.cgroups.used.values()):
                with contextlib.suppress(OSError):
                    self.cgroups.thaw(slot)
        await super().close()
        for relay in self.relays.values():
            await relay.close()
        self.relays.clear()
        if self.netns is not None:
            await self.netns.close()
        await asyncio.sleep(0.05)  # let the zygotes' children be reaped before removing cgroups
        if self._cleaning is not None:
            self._cleaning.cancel()
        if self.cgroups is not None:
            self.cgroups.close()
        for d in self.roots.iterdir():
            with contextlib.suppress(OSError):
                d.rmdir()


@dataclass(slots=True, eq=False)
class Spare:
    """A confined child one zygote prepared ahead of demand: only that zygote can hand it a
    spec (its pid means nothing to another), and its lease goes back when it is reaped, unless
    a start claimed it (then the lease is that instance's)."""

    pid: int
    lease: Lease
    limits: tuple[int, int, int]
    zygote: ZygoteClient
    claimed: bool = False


def _limits(spec: FunctionSpec) -> tuple[int, int, int]:
    """What a spare is prepared for: an instance with other limits cannot claim it."""
    return spec.limits.memory_mb, spec.limits.pids, spec.limits.tmp_mb


@dataclass(slots=True)
class Lease:
    """An instance's share of the backend: its cgroup slot (None rootless) and the relay's
    listening sockets in its network namespace, served until the instance is reaped."""

    slot: Slot | None
    doors: list[socket.socket] | None = None
    relay: EgressRelay | None = None
    live: bool = True  # False once the instance is being killed: never frozen again
    freezing: asyncio.Handle | None = None  # the freeze scheduled after its last reply

    def close(self) -> None:
        if self.doors and self.relay is not None:
            for door in self.doors:
                self.relay.detach(door)
        self.doors, self.relay = None, None


def _slot(inst: Instance) -> Slot | None:
    # backend_state is the ZygoteBackend's _State (typed `object` on Instance)
    lease = inst.backend_state.token  # type: ignore[attr-defined]
    return lease.slot if isinstance(lease, Lease) else None
