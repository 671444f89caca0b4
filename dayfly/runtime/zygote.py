"""The zygote: a warm interpreter (imports done, gc frozen) that forks instances on request.

Started by the host as `python -I -S -B -c <boot> <config-json>`; talks to the host over
one SOCK_SEQPACKET socket (fd given in the config). Each FORK request carries the new
instance's stream socket as an SCM_RIGHTS fd. The zygote owns its children: it reaps
them, reports each exit (DIED) and kills them on request, on SIGTERM, or when the host
hangs up, so no instance outlives the platform.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time

from . import protocol

_PRELOAD = ("asyncio", "json", "logging", "traceback", "inspect", "importlib.util", "resource",
            "threading", "io", "base64", "datetime", "decimal", "uuid", "hashlib", "urllib.parse")


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


class Zygote:
    """The fork server loop."""

    def __init__(self, config: dict) -> None:
        self.chan = socket.socket(fileno=config["fd"])
        self.children: set[int] = set()
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.config = config

    def warm(self) -> None:
        """Put dependencies on the path, import what every instance needs, freeze the heap."""
        import site

        for d in self.config.get("paths", []):
            site.addsitedir(d)
        for name in _PRELOAD + tuple(self.config.get("preload", ())):
            try:
                importlib.import_module(name)
            except Exception:  # a missing optional module only costs its import later
                pass
        from . import instance  # noqa: F401  (imported once, shared copy-on-write)

        gc.collect()
        gc.freeze()
        self.baseline_vm = _vm_size()

    def run(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.sel.register(self.chan, selectors.EVENT_READ, self._on_host)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_signal)
        self.chan.send(protocol.encode(protocol.ZYGOTE_READY, {"pid": os.getpid()}))
        while True:
            for key, _ in self.sel.select():
                key.data()

    def _on_signal(self) -> None:
        try:
            sigs = os.read(self.wake_r, 512)
        except BlockingIOError:
            return
        if signal.SIGTERM in sigs:
            self._shutdown()
        self._reap()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            info = {"pid": pid}
            if os.WIFSIGNALED(status):
                info["signal"] = os.WTERMSIG(status)
            else:
                info["code"] = os.WEXITSTATUS(status)
            self.chan.send(protocol.encode(protocol.DIED, info))

    def _on_host(self) -> None:
        try:
            msg, fds, _, _ = socket.recv_fds(self.chan, 1 << 20, 1)
        except ConnectionError:
            msg, fds = b"", []
        if not msg:
            self._shutdown()
        kind, meta, _ = protocol.decode(msg)
        if kind == protocol.FORK and fds:
            self._fork(meta, fds[0])
        elif kind == protocol.KILL and meta.get("pid") in self.children:
            os.kill(meta["pid"], signal.SIGKILL)
        for fd in fds[1:]:
            os.close(fd)

    def _shutdown(self) -> None:
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in list(self.children):
            try:
                os.wait()
            except ChildProcessError:
                break
        os._exit(0)

    def _fork(self, spec: dict, fd: int) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                self._become_instance(spec, fd)
            finally:
                os._exit(70)
        os.close(fd)
        self.children.add(pid)
        self.chan.send(protocol.encode(protocol.FORKED, {"id": spec["id"], "pid": pid}))

    def _become_instance(self, spec: dict, fd: int) -> None:
        """In the child: drop the zygote's fds and signals, apply limits and env, run the instance."""
        t_start = time.monotonic_ns()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, fd)
        os.closerange(fd + 1, 1 << 16)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.close(null)
        os.setsid()
        mem = int(spec.get("memory_mb", 0))
        if mem and spec.get("rlimit_as", True):
            limit = self.baseline_vm + mem * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.environ.clear()
        os.environ.update(spec.get("env", {}))
        os.chdir(spec["code_dir"])
        sys.path.insert(0, spec["code_dir"])
        from .instance import Instance

        inst = Instance(socket.socket(fileno=fd), spec)
        inst.init(t_start)
        inst.serve()


def main() -> None:
    config = json.loads(sys.argv[1])
    z = Zygote(config)
    z.warm()
    z.run()
