"""The `gvisor` tier: the zygote and its instances run under runsc (gVisor's user-space kernel).

File descriptors cannot be passed into the sandbox, so the zygote and each instance connect
back to host Unix sockets bind-mounted at /run/dayfly (`--host-uds=open`); an instance's
first frame (HELLO) names it. Starting a sandbox takes hundreds of milliseconds, so this
tier relies on warm zygotes; forks inside the sandbox are fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from ..background import spawn
from ..errors import SandboxError
from ..modes import share_tree
from ..runtime import protocol
from ..types import FunctionSpec
from . import lang, opt
from .linux import endpoints
from .linux.backend import ETC, SYSTEM_PATHS
from .linux.egress import EgressRelay, parse_allow
from .process import ZygoteBackend, instance_env
from .runtime_api import shells
from .zygote import BOOT, ZYGOTE_ENV, ZygoteClient

RUNSC = "runsc"
TASK, DEPS, RUNTIME, SOCKETS = "/var/task", "/var/deps", "/opt/dayfly", "/run/dayfly"


# Host tasks a sandbox may hold (its cgroup's pids.max, set by runsc from the OCI spec): what
# runsc's sentry, gofer and the zygote take (measured on the ptrace platform: ~80), plus per
# task inside (~6 measured: each process's stub, and the threads serving it)
HOST_TASKS_BASE = 256
HOST_TASKS_PER_TASK = 8


def _runsc_base(state: Path, cgroups: bool = True) -> list[str]:
    # ptrace works everywhere runsc does; kvm is faster but hangs under some nested VMs
    platform = os.environ.get("DAYFLY_RUNSC_PLATFORM", "ptrace")
    return [RUNSC, f"--root={state}", "--network=none", "--host-uds=open",
            *([] if cgroups else ["--ignore-cgroups"]), f"--platform={platform}"]


def task_budget(spec: FunctionSpec) -> int:
    """Tasks (processes and threads) the instances of one gVisor sandbox may hold together: they
    share its kernel and uid, so RLIMIT_NPROC counts them all: one each, plus one `pids`, plus
    the forwarder of declared egress."""
    return spec.limits.pids + spec.max_instances + (1 if spec.network else 0)


def host_tasks(spec: FunctionSpec) -> int:
    """The host-side cap of a sandbox: above anything the budget inside allows, so that only a
    gVisor fault (not a fork bomb, refused inside first) could reach it."""
    return HOST_TASKS_BASE + HOST_TASKS_PER_TASK * (task_budget(spec) + 1)


def _egress_sock(i: int) -> str:
    """The host socket (in the sandbox's /run/dayfly) of the i-th declared destination."""
    return f"egress-{i}.sock"


class _Frames(asyncio.Protocol):
    """Stream-framed zygote channel (host side)."""

    def __init__(self, client: GvisorZygote) -> None:
        self.client = client
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        size = protocol.PREFIX.size
        while len(self.buf) >= size:
            kind, mlen, plen = protocol.PREFIX.unpack_from(self.buf)
            end = size + mlen + plen
            if len(self.buf) < end:
                return
            meta = json.loads(self.buf[size : size + mlen]) if mlen else {}
            del self.buf[:end]
            self.client._handle(kind, meta)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost()


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


class GvisorZygote(ZygoteClient):
    """A zygote inside a runsc sandbox, reached through connect-back sockets."""

    def __init__(self, key: str, runtime_root: Path, bundle: Path, state: Path,
                 sockets: Path, egress: list[tuple[str, tuple[str, int]]] | None = None,
                 relay: EgressRelay | None = None) -> None:
        super().__init__(key, runtime_root)
        # declared egress: (host socket name, destination); the relay serves what comes there
        self.egress, self.relay = egress or [], relay
        self.bundle = bundle
        self.state = state
        self.sockets = sockets
        self.container = f"dayfly-{uuid.uuid4().hex[:12]}"
        self.transport: asyncio.Transport | None = None
        self.arrivals: dict[str, asyncio.Future] = {}
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        connected: asyncio.Future = loop.create_future()

        async def on_zygote(conn: socket.socket) -> None:
            if connected.done():
                conn.close()
            else:
                connected.set_result(conn)

        self._listen("zygote.sock", on_zygote)
        self._listen("instances.sock", self._on_instance)
        for name, target in self.egress:
            assert self.relay is not None
            self._listen(name, lambda conn, relay=self.relay, t=target: relay.accept(conn, t))
        self.proc = await asyncio.create_subprocess_exec(
            *_runsc_base(self.state), "run", "--bundle", str(self.bundle), self.container,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        spawn(self._drain_output())
        try:
            sock = await asyncio.wait_for(connected, 60)
            self.transport, _ = await loop.connect_accepted_socket(lambda: _Frames(self), sock)
            await asyncio.wait_for(self.ready, 30)
        except (TimeoutError, EOFError) as exc:
            await self.close()
            raise SandboxError(f"gVisor zygote {self.key} did not start") from exc

    def _listen(self, name: str, handle) -> None:
        """Accept connections on the host socket `name` (bound into the sandbox) as raw
        sockets: a stream wrapper would read ahead of the first frame, and whatever the peer
        sent right after it (an instance's init result, the zygote's READY) would be lost
        with the wrapper when the socket is handed on."""
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(str(self.sockets / name))
        lsock.listen(512)
        lsock.setblocking(False)
        os.chmod(self.sockets / name, 0o777)
        self._listeners.append(lsock)

        async def accept() -> None:
            loop = asyncio.get_running_loop()
            while True:
                conn, _ = await loop.sock_accept(lsock)
                conn.setblocking(False)
                spawn(handle(conn))

        self._accepting.append(spawn(accept()))

    async def close_listeners(self) -> None:
        for task in self._accepting:
            task.cancel()
        await asyncio.gather(*self._accepting, return_exceptions=True)
        for lsock in self._listeners:
            lsock.close()
        self._accepting, self._listeners = [], []

    async def _on_instance(self, conn: socket.socket) -> None:
        """An instance's first frame (HELLO) names it; read exactly that, nothing after it."""
        loop = asyncio.get_running_loop()
        try:
            head = await asyncio.wait_for(_recv_exactly(loop, conn, protocol.PREFIX.size), 10)
            kind, mlen, plen = protocol.PREFIX.unpack(head)
            if plen or mlen > 4096:
                raise ValueError("not a HELLO frame")
            body = await asyncio.wait_for(_recv_exactly(loop, conn, mlen), 10)
            meta = json.loads(body) if mlen else {}
        except (EOFError, OSError, TimeoutError, ValueError):
            conn.close()
            return
        fut = self.arrivals.pop(meta.get("id", ""), None) if isinstance(meta, dict) else None
        if kind != protocol.HELLO or fut is None or fut.done():
            conn.close()
            return
        fut.set_result(conn)

    async def _send(self, msg: bytes, fds: list[int] = ()) -> None:  # type: ignore[assignment]
        if self.transport is None or self.transport.is_closing():
            raise SandboxError(f"gVisor zygote {self.key} is gone")
        self.transport.write(msg)

    async def fork(self, instance_id: str, spec: dict,
                   fds: tuple[int, ...] = ()) -> tuple[int, socket.socket]:
        if self.dead:
            raise SandboxError(f"gVisor zygote {self.key} is gone")
        loop = asyncio.get_running_loop()
        forked, arrived = loop.create_future(), loop.create_future()
        self.forks[instance_id] = forked
        self.arrivals[instance_id] = arrived
        await self._send(protocol.encode(protocol.FORK, {**spec, "id": instance_id}))
        try:
            pid = await asyncio.wait_for(forked, 10)
            sock = await asyncio.wait_for(arrived, 10)
        except (TimeoutError, EOFError) as exc:
            self.arrivals.pop(instance_id, None)
            raise SandboxError(f"gVisor zygote {self.key} did not fork") from exc
        self.deaths.setdefault(pid, loop.create_future())
        self.instances += 1
        return pid, sock

    def _lost(self) -> None:
        self.dead = True
        self._fail_requests()
        self._all_died()

    def _fail_requests(self) -> None:
        super()._fail_requests()
        for fut in self.arrivals.values():
            if not fut.done():
                fut.set_exception(EOFError())
        self.arrivals.clear()

    async def close(self) -> None:
        self.dead = True
        self._fail_requests()
        try:
            await self._stop_sandbox()
        finally:
            self._all_died()  # the sandbox, and every instance in it, is gone

    async def _stop_sandbox(self) -> None:
        if self.transport is not None:
            self.transport.close()
        await self.close_listeners()
        for cmd in (["kill", self.container, "KILL"], ["delete", "--force", self.container]):
            proc = await asyncio.create_subprocess_exec(
                *_runsc_base(self.state), *cmd, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            await proc.wait()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                await self.proc.wait()
        shutil.rmtree(self.sockets, ignore_errors=True)
        shutil.rmtree(self.bundle.parent, ignore_errors=True)


class GvisorBackend(ZygoteBackend):
    """One runsc sandbox per function (its zygote); instances fork inside it."""

    name = "gvisor"
    weak = False
    no_bindings = ("the gvisor tier offers no bucket bindings: no file descriptors cross its "
                   "boundary")
    _probe: tuple[bool, str] | None = None

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.base = Path(data_dir) / "gvisor"
        self.state = self.base / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.langs = lang.Langs(Path(data_dir))  # one staged interpreter per runtime

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if cls._probe is None:
            cls._probe = cls._check()
        return cls._probe

    @classmethod
    def _check(cls) -> tuple[bool, str]:
        if shutil.which(RUNSC) is None:
            return False, "runsc is not installed (Debian: apt-get install runsc)"
        if os.geteuid() != 0:
            return False, "runsc needs root here"
        with tempfile.TemporaryDirectory(prefix="dayfly-runsc-") as tmp:
            try:
                out = subprocess.run([*_runsc_base(Path(tmp), cgroups=False), "do",
                                      "/bin/true"],
                                     capture_output=True, timeout=20, text=True)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return False, f"runsc did not run: {exc}"
        if out.returncode != 0:
            return False, f"runsc failed: {(out.stderr or out.stdout).strip()[-200:]}"
        return True, "gVisor (runsc) sandboxes"

    def zygote_key(self, spec: FunctionSpec) -> str:
        return (f"gvisor|{spec.runtime}|{spec.code_dir}|{spec.deps_dir or ''}|"
                f"{','.join(spec.files)}|{task_budget(spec)}|{','.join(spec.layers)}|"
                f"{','.join(spec.network)}")

    async def new_zygote(self, spec: FunctionSpec, key: str) -> ZygoteClient:
        # declared egress: the forwarder in the sandbox listens at each destination's address
        # on gVisor's loopback and carries connections to a host socket per destination
        eps = endpoints.plan(spec.network, loopback_only="gvisor")
        work = Path(tempfile.mkdtemp(dir=self.base, prefix="z-"))
        bundle = work / "bundle"
        # Unix socket paths must stay under 108 bytes: keep them short, outside the data dir
        sockets = Path(tempfile.mkdtemp(prefix="dayfly-gv-"))
        os.chmod(sockets, 0o755)
        (work / "sockets").symlink_to(sockets)
        binds = [(str(self.runtime_root), RUNTIME), (spec.code_dir, TASK),
                 (str(sockets), SOCKETS)]
        if spec.layers:  # first: the runtime copy is mounted inside it
            merged = await asyncio.to_thread(opt.merged, self.data_dir, spec.layers)
            binds.insert(0, (str(merged), opt.OPT))
        if spec.deps_dir:
            binds.append((spec.deps_dir, DEPS))
        lg = await asyncio.to_thread(self.langs.get, spec.runtime)
        binds += lg.layers  # the interpreter at /var/lang, never at its host path
        binds += [(p, p) for p in SYSTEM_PATHS if os.path.exists(p)]
        binds += [(p, p) for p in spec.files] + shells(spec.runtime)
        await asyncio.to_thread(self._write_bundle, bundle, binds, spec, lg, eps)
        relay = EgressRelay(spec.name, parse_allow(list(spec.network))) if eps else None
        return GvisorZygote(key, self.runtime_root, bundle, self.state, sockets,
                            [(_egress_sock(i), e.upstream) for i, e in enumerate(eps)], relay)

    def _write_bundle(self, bundle: Path, binds: list[tuple[str, str]], spec: FunctionSpec,
                      lg: lang.Lang, eps: list[endpoints.Endpoint]) -> None:
        rootfs = bundle / "rootfs"
        for d in ("proc", "tmp", "dev", "etc", "usr/bin"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        for link, target in {"lib": "usr/lib", "lib64": "usr/lib64", "bin": "usr/bin"}.items():
            (rootfs / link).symlink_to(target)
        for path, text in {**ETC, "/etc/hosts": endpoints.hosts_file(eps)}.items():
            (rootfs / path.lstrip("/")).write_text(text)
        mounts = [{"destination": "/proc", "type": "proc", "source": "proc"},
                  {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", f"size={spec.limits.tmp_mb}m", "mode=1777"]}]
        for src, dst in binds:
            mountpoint = rootfs / dst.lstrip("/")
            if os.path.isdir(src):
                mountpoint.mkdir(parents=True, exist_ok=True)
            else:
                mountpoint.parent.mkdir(parents=True, exist_ok=True)
                mountpoint.touch()
            opts = ["rbind", "rw" if dst == SOCKETS else "ro", "nosuid", "nodev"]
            mounts.append({"destination": dst, "type": "bind", "source": src, "options": opts})
        for path in lg.masks:  # site-packages in the standard library
            mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                           "options": ["ro", "size=4k"]})
        share_tree(rootfs)  # the sandbox's uid walks these directories and reads /etc
        config: dict = {"connect": SOCKETS, "runtime_root": RUNTIME}
        if eps:
            config["forward"] = [[e.bind, e.port, f"{SOCKETS}/{_egress_sock(i)}"]
                                 for i, e in enumerate(eps)]
        boot = BOOT.format(root=RUNTIME)
        spec_json = {
            "ociVersion": "1.0.0",
            "process": {
                "terminal": False, "user": {"uid": 1000, "gid": 1000},
                "args": [lg.python, "-I", "-S", "-B", "-c", boot, json.dumps(config)],
                "env": [f"{k}={v}" for k, v in {**ZYGOTE_ENV, **lg.env}.items()],
                "cwd": "/",
                "capabilities": {k: [] for k in ("bounding", "effective", "inheritable",
                                                 "permitted", "ambient")},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": True,
            },
            "root": {"path": "rootfs", "readonly": True},
            "hostname": "dayfly",
            "mounts": mounts,
            "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts",
                                                           "mount")],
                      **self._cgroup(bundle, spec)},
        }
        (bundle / "config.json").write_text(json.dumps(spec_json, indent=1))

    @staticmethod
    def _cgroup(bundle: Path, spec: FunctionSpec) -> dict:
        """The host cgroup runsc puts the whole sandbox in (sentry, gofer, every stub), with
        its pids cap; `runsc delete` removes it."""
        return {"cgroupsPath": f"/dayfly-gv-{os.getpid()}-{bundle.parent.name}",
                "resources": {"pids": {"limit": host_tasks(spec)}}}

    def fork_spec(self, spec: FunctionSpec, instance_id: str) -> dict:
        env = instance_env(spec, instance_id)
        env.update(LAMBDA_TASK_ROOT=TASK, HOME="/tmp")
        # RLIMIT_NPROC, which gVisor enforces: a fork bomb gets EAGAIN inside the sandbox
        # (`nproc` also makes the instance report "process limit reached")
        return {"handler": spec.handler, "code_dir": TASK,
                "deps_dir": DEPS if spec.deps_dir else None, "sdk_dir": lang.sdk.SDK, "env": env,
                "layer_paths": opt.python_paths(opt.OPT, spec.runtime) if spec.layers else [],
                "memory_mb": spec.limits.memory_mb, "nproc": task_budget(spec),
                "max_output_bytes": spec.limits.max_output_bytes, "rlimit_as": True,
                "kind": spec.kind}

    def stats(self, inst):  # type: ignore[no-untyped-def]
        from .base import InstanceStats

        return InstanceStats()  # instance pids live inside the sandbox's own kernel
