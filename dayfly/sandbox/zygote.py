"""Host end of a zygote: spawn it, ask it to fork instances, hear about their deaths.

Shared by every tier that forks from a zygote; tiers differ only in the command
prefix that puts the zygote in its sandbox before Python starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from ..background import spawn
from ..errors import SandboxError
from ..modes import SANDBOX_UMASK, share_tree
from ..runtime import protocol

log = logging.getLogger("dayfly.zygote")

_RUNTIME_FILES = ("__init__.py", "protocol.py", "context.py", "instance.py", "buckets.py",
                  "zygote.py", "jail.py", "prefork.py", "streaming.py", "web.py",
                  "runtime_api.py", "forwarder.py")
# the zygote's first act: a umask under which its jails' directories are enterable by instances
# (the platform's own is 077); then the runtime from the copy at `root`
BOOT = (f"import os, sys; os.umask({SANDBOX_UMASK:#o}); sys.path.insert(0, {{root!r}}); "
        "from dayfly.runtime.zygote import main; main()")
# fds a zygote's frame may carry: an instance's relay doors (its HTTP proxy and one per declared
# destination: `network` has at most 64 entries)
MAX_DOORS = 66
ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # all a zygote is given


def prepare_runtime(target: Path) -> Path:
    """Copy the in-sandbox runtime (and nothing else of dayfly) to `target`; return the root."""
    src = Path(__file__).resolve().parent.parent / "runtime"
    pkg = target / "dayfly" / "runtime"
    pkg.mkdir(parents=True, exist_ok=True)
    (target / "dayfly" / "__init__.py").write_text('"""dayfly runtime (in-sandbox copy)."""\n')
    for name in _RUNTIME_FILES:
        shutil.copyfile(src / name, pkg / name)
    share_tree(target)  # instances (other uids) import it
    return target


def exit_reason(info: dict) -> str:
    """Lambda's wording for how a runtime process ended."""
    if "signal" in info:
        sig = info["signal"]
        try:
            desc = signal.strsignal(sig) or f"signal {sig}"
        except ValueError:
            desc = f"signal {sig}"
        return f"Runtime exited with error: signal: {desc.lower()}"
    return f"Runtime exited with error: exit status {info.get('code', '?')}"


class ZygoteClient:
    """One zygote process and its SOCK_SEQPACKET channel."""

    def __init__(self, key: str, runtime_root: Path, *, extra: dict | None = None,
                 pass_fds: tuple[int, ...] = (), prefix: tuple[str, ...] = (),
                 python: str | None = None) -> None:
        self.key = key
        self.python = python or sys.executable  # jailed tiers: only the first stage's
        self.runtime_root = runtime_root
        self.extra = extra or {}
        self.pass_fds = pass_fds
        self.prefix = list(prefix)
        self.proc: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.ready: asyncio.Future | None = None
        self.forks: dict[str, asyncio.Future] = {}  # instance id -> pid
        self.deaths: dict[int, asyncio.Future] = {}  # pid -> exit info
        self.forgotten: set[int] = set()  # pids the host is done with, awaiting their DIED
        self.instances = 0
        self.last_used = time.monotonic()
        self.dead = False
        # pid -> the relay's listening sockets inside that instance's network namespace
        # (jailed tiers; they arrive with FORKED and are taken by the backend)
        self.doors: dict[int, list[socket.socket]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {**self.extra, "fd": child.fileno(), "runtime_root": str(self.runtime_root)}
        cmd = [*self.prefix, self.python, "-I", "-S", "-B", "-c",
               BOOT.format(root=str(self.runtime_root)), json.dumps(config)]
        env = dict(ZYGOTE_ENV)
        self.ready = loop.create_future()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, pass_fds=(child.fileno(), *self.pass_fds), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True)
        finally:
            child.close()
        host.setblocking(False)
        self.sock = host
        loop.add_reader(host.fileno(), self._readable)
        spawn(self._drain_output())
        try:
            await asyncio.wait_for(self.ready, 30)
        except (TimeoutError, EOFError) as exc:
            await self.close()
            raise SandboxError(f"zygote {self.key} did not start") from exc

    async def _drain_output(self) -> None:
        """Forward anything written to fd 1/2 below Python (C extensions, crashes) to our log."""
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            log.warning("zygote %s: %s", self.key, line.decode(errors="replace").rstrip())

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, 65536, MAX_DOORS)
            except BlockingIOError:
                return
            except OSError:
                msg, fds = b"", []
            if not msg:
                self._lost()
                return
            kind, meta, _ = protocol.decode(msg)
            self._handle(kind, meta, fds)

    def _handle(self, kind: int, meta: dict, fds: list[int] | None = None) -> None:
        """One frame from the zygote (FORKED may carry the instance's relay sockets)."""
        fds = fds or []
        if kind == protocol.ZYGOTE_READY and self.ready and not self.ready.done():
            self.ready.set_result(meta["pid"])
        elif kind == protocol.FORKED:
            if fds and "pid" in meta:
                self.doors[meta["pid"]] = [socket.socket(fileno=fd) for fd in fds]
                fds = []
            fut = self.forks.pop(meta["id"], None)
            if fut is not None and not fut.done():
                if "error" in meta:
                    fut.set_exception(SandboxError(f"zygote {self.key}: {meta['error']}"))
                else:
                    fut.set_result(meta["pid"])
        elif kind == protocol.DIED:
            pid = meta["pid"]
            fut = self.deaths.setdefault(pid, asyncio.get_running_loop().create_future())
            if not fut.done():
                fut.set_result(meta)
            if pid in self.forgotten:
                self.forgotten.discard(pid)
                del self.deaths[pid]
            for door in self.doors.pop(pid, ()):  # never taken: nobody serves them
                door.close()
        for fd in fds:  # nothing else carries fds from a zygote
            os.close(fd)

    def _lost(self) -> None:
        self.dead = True
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self._fail_requests()
        self._all_died()

    def _fail_requests(self) -> None:
        """Nothing asked of a zygote that is gone will be answered: fail the waiters."""
        for fut in [self.ready, *self.forks.values()]:
            if fut is not None and not fut.done():
                fut.set_exception(EOFError())
        self.forks.clear()

    def _all_died(self) -> None:
        """Every child of a zygote that is gone is gone too: whoever waits for one's death (to
        give its resources back, or to forget a spare) hears of it now."""
        for fut in self.deaths.values():
            if not fut.done():
                fut.set_result({"code": "?", "zygote": "gone"})

    async def fork(self, instance_id: str, spec: dict,
                   fds: tuple[int, ...] = ()) -> tuple[int, socket.socket]:
        """Fork one instance; return its pid and the host end of its stream socket.
        `fds` (e.g. cgroup.procs files) travel with the request for the zygote to use."""
        if self.dead or self.sock is None:
            raise SandboxError(f"zygote {self.key} is gone")
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fut = asyncio.get_running_loop().create_future()
        self.forks[instance_id] = fut
        try:
            msg = protocol.encode(protocol.FORK, {**spec, "id": instance_id})
            await self._send(msg, [child.fileno(), *fds])
        finally:
            child.close()
        try:
            pid = await asyncio.wait_for(fut, 10)
        except (TimeoutError, EOFError) as exc:
            host.close()
            raise SandboxError(f"zygote {self.key} did not fork") from exc
        except SandboxError:
            host.close()
            raise
        self.deaths.setdefault(pid, asyncio.get_running_loop().create_future())
        self.instances += 1
        self.last_used = time.monotonic()
        return pid, host

    async def prepare_spare(self, spare_id: str, meta: dict, fds: tuple[int, ...]) -> int:
        """Have the zygote prepare a confined spare child (jailed tiers); return its pid."""
        if self.dead or self.sock is None:
            raise SandboxError(f"zygote {self.key} is gone")
        fut = asyncio.get_running_loop().create_future()
        self.forks[spare_id] = fut
        await self._send(protocol.encode(protocol.SPARE, {**meta, "id": spare_id}), list(fds))
        try:
            pid = await asyncio.wait_for(fut, 10)
        except (TimeoutError, EOFError) as exc:
            raise SandboxError(f"zygote {self.key} did not prepare a spare") from exc
        self.deaths.setdefault(pid, asyncio.get_running_loop().create_future())
        return pid

    async def _send(self, msg: bytes, fds: list[int] = ()) -> None:  # type: ignore[assignment]
        assert self.sock is not None
        for _ in range(1000):
            try:
                socket.send_fds(self.sock, [msg], fds) if fds else self.sock.send(msg)
                return
            except BlockingIOError:
                await asyncio.sleep(0.001)
        raise SandboxError(f"zygote {self.key} is not reading its channel")

    def death(self, pid: int) -> asyncio.Future:
        """Resolves with {"pid", "code"|"signal"} when the instance has been reaped."""
        fut = self.deaths.get(pid)
        if fut is None:
            fut = self.deaths[pid] = asyncio.get_running_loop().create_future()
        return fut

    def forget(self, pid: int) -> None:
        """The host is done with this instance; drop its record once it has been reaped."""
        fut = self.deaths.get(pid)
        if fut is not None and fut.done():
            del self.deaths[pid]
        else:
            self.forgotten.add(pid)
        self.instances -= 1
        self.last_used = time.monotonic()

    async def kill(self, pid: int) -> None:
        if not self.dead:
            with contextlib.suppress(SandboxError, OSError):
                await self._send(protocol.encode(protocol.KILL, {"pid": pid}))

    async def close(self) -> None:
        """Hang up; the zygote kills its children and exits. SIGKILL it if it lingers. Once it
        has exited, every death still awaited resolves (its children went with it), so what
        they held (cgroup slots, a spare's place) is given back and never handed on."""
        if self.sock is not None:
            if not self.dead:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for doors in self.doors.values():
            for door in doors:
                door.close()
        self.doors.clear()
        self.dead = True
        self._fail_requests()
        try:
            if self.proc is not None and self.proc.returncode is None:
                try:
                    await asyncio.wait_for(self.proc.wait(), 2)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    await self.proc.wait()
        finally:
            self._all_died()
