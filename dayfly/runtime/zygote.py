"""The zygote: a warm interpreter (imports done, gc frozen) that forks instances on request.

Started by the host as `python -I -S -B -c <boot> <config-json>` (jailed tiers: that first
process builds the sandbox and execs the zygote inside it, `enter_and_exec`); talks to the
host over one SOCK_SEQPACKET socket (fd given in the config). Each FORK request carries the new
instance's stream socket as an SCM_RIGHTS fd. The zygote owns its children: it reaps
them, reports each exit (DIED) and kills them on request, on SIGTERM, or when the host
hangs up, so no instance outlives the platform.
"""

from __future__ import annotations

import _signal  # signal.signal minus its enum conversions, which run much Python in a child
import contextlib
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

from . import prefork, protocol

RUNTIME = "/opt/dayfly"  # where jailed zygotes see this package
# what of its jail's configuration the zygote that serves needs (numbers: nothing of the host)
_AFTER_EXEC = ("relay_port", "egress", "lo_addrs", "thaw_dir_fd")
NETNS_AHEAD = 2  # jailed zygotes keep this many instance network namespaces ready
NETNS_QUIET_S = 0.05  # ... made after this long without a request
_PRELOAD = ("asyncio", "json", "logging", "traceback", "inspect", "importlib.util", "resource",
            "threading", "io", "base64", "datetime", "decimal", "uuid", "hashlib", "urllib.parse")


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


class Zygote:
    """The fork server loop."""

    def __init__(self, config: dict) -> None:
        # Either a SOCK_SEQPACKET fd from the host (fds travel with FORK), or, where fds cannot
        # cross the boundary (gVisor), a directory of host sockets to connect back to.
        self.connect_dir = config.get("connect")
        if self.connect_dir:
            self.chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.chan.connect(f"{self.connect_dir}/zygote.sock")
        else:
            self.chan = socket.socket(fileno=config["fd"])
        self.children: set[int] = set()
        self.slots: dict[int, int] = {}  # pid -> its cgroup slot's index (cgroup v1 freezer)
        self.spares: dict[int, socket.socket] = {}  # pid -> control socket of a prepared spare
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.config = config
        self.home_net = -1  # jailed: the zygote's own network namespace (instances get theirs)
        # instances' network namespaces, made while the zygote has nothing else to do:
        # (namespace fd, the relay's listening sockets inside: its doors)
        self.nets: list[tuple[int, list[socket.socket]]] = []
        self.nets_failing = False
        # gVisor, declared egress: listening sockets at each destination's address, and the
        # process that carries their connections to the host (forwarder.py)
        self.forward: list[tuple[socket.socket, str]] = []
        self.forwarder = 0

    def warm(self) -> None:
        """Enter the sandbox (jailed tiers), import what every instance needs, freeze the heap.

        No code of the function runs here (not even its dependencies' .pth files): the zygote
        keeps privileges that instances drop, so it only ever runs dayfly's runtime and the
        standard library.
        """
        from . import instance, runtime_api  # noqa: F401  (imported once, shared copy-on-write)

        self.jail: dict = self.config.get("jail") or {}  # empty: the process tier
        if self.jail:  # started inside its sandbox by `enter_and_exec`
            self.home_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            # the code and dependency folders are fixed here: their path finders (and directory
            # listings) are made once, shared, instead of by every instance. Nothing is imported.
            for folder in ("/var/task", "/var/deps"):
                for hook in sys.path_hooks:
                    with contextlib.suppress(ImportError):
                        finder = hook(folder)
                        finder.find_spec("_dayfly_warm_")
                        sys.path_importer_cache[folder] = finder
                        break
        for name in _PRELOAD + tuple(self.config.get("preload", ())):
            with contextlib.suppress(Exception):  # a missing module only costs its import later
                importlib.import_module(name)
        if self.config.get("forward"):
            from . import forwarder

            self.forward = forwarder.listen(self.config["forward"])
        prefork.rehearse()  # instances then copy less of this heap (runtime/prefork.py)
        gc.collect()
        self.ballast = prefork.fill_pools()
        gc.freeze()
        self.baseline_vm = _vm_size()

    def _send(self, frame: bytes, doors: list[socket.socket] | None = None) -> None:
        """One frame to the host; `doors` (an instance's relay sockets) travel with it."""
        doors = doors or []
        try:
            if doors:
                socket.send_fds(self.chan, [frame], [door.fileno() for door in doors])
            elif self.connect_dir:
                self.chan.sendall(frame)
            else:
                self.chan.send(frame)
        except OSError:  # the host is gone: nobody to serve
            self._shutdown()
        finally:
            for door in doors:
                door.close()  # the host holds it now

    def run(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.sel.register(self.chan, selectors.EVENT_READ, self._on_host)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_signal)
        if self.forward:
            self._start_forwarder()
        self._send(protocol.encode(protocol.ZYGOTE_READY, {"pid": os.getpid()}))
        while True:
            # namespaces are made ahead once the zygote has been quiet a moment, not right
            # after a fork: that would put a third of a millisecond of kernel work on the cores
            # the instance it just made is starting on
            ahead = self.jail and not self.nets_failing and len(self.nets) < NETNS_AHEAD
            events = self.sel.select(NETNS_QUIET_S if ahead else None)
            if ahead and not events:
                self._make_netns()
            for key, _ in events:
                key.data()

    def _make_netns(self) -> None:
        """One instance network namespace ahead of demand (a third of a millisecond of kernel
        CPU, perf: `setup_net`, that would otherwise delay the clone that needs it)."""

        try:
            self.nets.append(self._new_netns())
        except OSError as exc:  # e.g. a namespace limit: made on demand, and reported then
            self.nets_failing = True
            os.write(2, f"dayfly zygote: cannot prepare a network namespace: {exc}\n".encode())

    def _new_netns(self) -> tuple[int, list[socket.socket]]:
        """An instance's network namespace with the relay's doors in it: its HTTP proxy, and
        one at each declared destination's address (`lo_addrs` added to its lo first)."""
        from . import jail

        listen = [(a, int(p)) for a, p in self.jail.get("egress", ())]
        if self.jail.get("relay_port"):
            listen.insert(0, ("127.0.0.1", int(self.jail["relay_port"])))
        return jail.new_netns(listen, self.jail.get("lo_addrs", ()))

    def _start_forwarder(self) -> None:
        """gVisor: fork the process that carries connections to declared destinations, again
        whenever it dies (`_kill_strays` kills it too). The listening sockets stay the
        zygote's, so what connects while it restarts waits in their queues."""
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                    _signal.signal(sig, _signal.SIG_DFL)
                low = 3
                for fd in sorted(s.fileno() for s, _ in self.forward):
                    os.closerange(low, fd)
                    low = fd + 1
                os.closerange(low, 1 << 16)
                from . import forwarder

                forwarder.serve(self.forward)
            finally:
                os._exit(70)
        self.forwarder = pid

    def _on_signal(self) -> None:
        try:
            sigs = os.read(self.wake_r, 512)
        except BlockingIOError:
            return
        if signal.SIGTERM in sigs:
            self._shutdown()
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.forwarder:
                self._start_forwarder()
                continue
            if pid not in self.children:  # gVisor: an orphan the zygote inherited as init
                continue
            self.children.discard(pid)
            self.slots.pop(pid, None)
            # ru_maxrss (KiB): the host's REPORT of a crash or an OOM kill says what it used
            info = {"pid": pid, "maxrss": usage.ru_maxrss}
            if os.WIFSIGNALED(status):
                info["signal"] = os.WTERMSIG(status)
            else:
                info["code"] = os.WEXITSTATUS(status)
            self._send(protocol.encode(protocol.DIED, info))
            if self.connect_dir and not self.children:
                self._kill_strays()

    def _kill_strays(self) -> None:
        """gVisor: the zygote is its sandbox's init, so what an instance left running outside
        its process group (setsid after a double fork) became the zygote's; with no instance
        left, every other process in the sandbox is such a stray (kill(-1) spares init)."""
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)

    def _on_host(self) -> None:
        try:
            if self.connect_dir:
                kind, meta, _ = protocol.read(self.chan)
                fds = [-1] if kind == protocol.FORK else []  # the instance connects back itself
            else:
                msg, fds, _, _ = socket.recv_fds(self.chan, 1 << 20, 8)
                if not msg:
                    raise EOFError
                kind, meta, _ = protocol.decode(msg)
        except (ConnectionError, EOFError):
            self._shutdown()
        if kind == protocol.FORK and fds and "spare" in meta:
            self._claim(meta, fds[0])
        elif kind == protocol.FORK and fds:
            self._fork(meta, fds[0], fds[1:])
        elif kind == protocol.SPARE and self.jail:
            self._prepare_spare(meta, fds)
        elif kind == protocol.KILL and meta.get("pid") in self.children:
            _kill_group(meta["pid"])
        else:
            for fd in fds:
                os.close(fd)

    def _shutdown(self) -> None:
        if self.forwarder:
            _kill_group(self.forwarder)
        for pid in self.children:
            _kill_group(pid)
            self._thaw(pid)
        for _ in list(self.children):
            try:
                os.wait()
            except ChildProcessError:
                break
        os._exit(0)

    def _thaw(self, pid: int) -> None:
        """Thaw a killed instance's v1 freezer cgroup: a frozen task keeps SIGKILL pending until
        it thaws, and the host that would thaw it may be gone (kill -9)."""
        dir_fd, slot = getattr(self, "jail", {}).get("thaw_dir_fd"), self.slots.get(pid)
        if dir_fd is None or slot is None:
            return
        with contextlib.suppress(OSError):
            state = os.open(f"s{slot}/freezer.state", os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.write(state, b"THAWED")
            finally:
                os.close(state)

    def _fork(self, spec: dict, fd: int, cgroup_fds: list[int]) -> None:
        doors: list[socket.socket] = []
        if not self.jail:
            pid = os.fork()
            if pid == 0:
                self._child(spec, fd)
        else:
            pid, doors = self._fork_jailed(spec, fd, cgroup_fds)
        if fd >= 0:
            os.close(fd)
        for cfd in cgroup_fds:
            os.close(cfd)
        if pid > 0:
            self.children.add(pid)
            if "slot" in spec:
                self.slots[pid] = spec["slot"]
            self._send(protocol.encode(protocol.FORKED, {"id": spec["id"], "pid": pid}), doors)

    def _prepare_spare(self, meta: dict, cgroup_fds: list[int]) -> None:
        """A child cloned, mapped, in its cgroup and confined ahead of demand: claiming it later
        costs one message instead of a clone and the kernel's cgroup move (whose latency has a
        long tail on cgroup v1)."""
        ctl, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid, doors = self._fork_jailed(meta, -1, cgroup_fds,
                                       then=lambda: self._spare(meta, ctl_child.detach()))
        ctl_child.close()
        for cfd in cgroup_fds:
            os.close(cfd)
        if pid > 0:
            self.children.add(pid)
            if "slot" in meta:
                self.slots[pid] = meta["slot"]
            self.spares[pid] = ctl
            self._send(protocol.encode(protocol.FORKED, {"id": meta["id"], "pid": pid}), doors)
        else:
            ctl.close()

    def _spare(self, meta: dict, ctl_fd: int) -> None:
        """In a spare: confine now, then wait to be claimed (or for the zygote to go away)."""
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                _signal.signal(sig, _signal.SIG_DFL)
            # keep only stdio and the control socket: with the zygote's end closed here too,
            # the zygote going away reads as EOF
            os.closerange(3, ctl_fd)
            os.closerange(ctl_fd + 1, 1 << 16)
            os.setsid()
            from . import jail

            jail.confine_instance(int(meta.get("tmp_mb", 64)))
            ctl = socket.socket(fileno=ctl_fd)
            msg, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 1)
            if not msg or not fds:
                os._exit(0)  # the zygote is gone: nothing will claim this spare
            _, spec, _ = protocol.decode(msg)
            self._become_instance(spec, fds[0], confined=True)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(70)

    def _claim(self, meta: dict, fd: int) -> None:
        """Hand a prepared spare its spec and channel; it becomes the instance."""
        ctl = self.spares.pop(meta["spare"], None)
        try:
            if ctl is None:
                raise OSError(f"no spare {meta['spare']}")
            socket.send_fds(ctl, [protocol.encode(protocol.FORK, meta)], [fd])
        except OSError as exc:
            self._send(protocol.encode(protocol.FORKED, {"id": meta["id"], "error": str(exc)}))
        else:
            self._send(protocol.encode(protocol.FORKED, {"id": meta["id"], "pid": meta["spare"]}))
        finally:
            os.close(fd)
            if ctl is not None:
                ctl.close()

    def _fork_jailed(self, spec: dict, fd: int, cgroup_fds: list[int],
                     then=None) -> tuple[int, list[socket.socket]]:
        """Clone into a network namespace of its own (I1a) and new user, pid, mount, IPC and
        UTS namespaces; map ids and join the cgroup while still privileged, before letting the
        child go on (I1). Returns the pid and the relay's sockets in the child's namespace."""
        from . import jail

        go_r, go_w = os.pipe()
        net = -1
        doors: list[socket.socket] = []
        try:
            self.nets_failing = False
            net, doors = self.nets.pop(0) if self.nets else self._new_netns()
            jail.enter_netns(net)
            pid, born_in = jail.clone_fork(
                jail.CLONE_NEWUSER | jail.CLONE_NEWPID | jail.CLONE_NEWNS | jail.CLONE_NEWIPC
                | jail.CLONE_NEWUTS, cgroup_fds[0] if spec.get("cg") == "into" else -1)
        except OSError as exc:
            jail.return_to_netns(self.home_net)
            os.close(go_r)
            os.close(go_w)
            if net >= 0:
                os.close(net)
            for door in doors:
                door.close()
            self._send(protocol.encode(protocol.FORKED, {"id": spec["id"], "error": str(exc)}))
            return -1, []
        if pid == 0:
            for door in doors:  # the host's end, not the instance's: closed, not collected
                os.close(door.detach())
            try:
                os.close(go_w)
                go = os.read(go_r, 1) == b"1"  # wait until ids are mapped (and cgroups joined)
                os.close(go_r)
                if go and spec.get("cg") == "self":  # cgroup v1: join by moving itself (I1)
                    for cfd in cgroup_fds:
                        os.write(cfd, b"0")
            except BaseException:
                go = False
            if not go:
                os._exit(71)
            if then is not None:
                then()
            self._child(spec, fd)
        jail.return_to_netns(self.home_net)
        os.close(net)  # the child holds the namespace now (and the host, through the door)
        os.close(go_r)
        try:
            jail.map_ids(pid, spec["uid"], spec["gid"])
            if spec.get("cg") == "into" and not born_in:  # v2 without CLONE_INTO_CGROUP
                procs = os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=cgroup_fds[0])
                try:
                    os.write(procs, str(pid).encode())
                finally:
                    os.close(procs)
            os.write(go_w, b"1")
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)
            self._send(protocol.encode(protocol.FORKED, {"id": spec["id"],
                                                             "error": f"set-up failed: {exc}"}))
            os.close(go_w)
            self.children.add(pid)  # reaped (and reported) like any other child
            for door in doors:
                door.close()
            return -1, []
        os.close(go_w)
        return pid, doors

    def _child(self, spec: dict, fd: int) -> None:
        """Become the instance; never return into the zygote's loop."""
        try:
            self._become_instance(spec, fd)
        except BaseException:
            import traceback

            traceback.print_exc()  # fd 2 is the zygote's output pipe: it lands in the host log
        finally:
            os._exit(70)

    def _become_instance(self, spec: dict, fd: int, confined: bool = False) -> None:
        """In the child: drop the zygote's fds and signals, confine, apply limits and env, run."""
        t_start = time.monotonic_ns()
        signal.set_wakeup_fd(-1)
        if fd < 0:  # connect back to the host and say who we are
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(f"{self.connect_dir}/instances.sock")
            sock.sendall(protocol.encode(protocol.HELLO, {"id": spec["id"]}))
            fd = sock.detach()
            self.chan.close()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            _signal.signal(sig, _signal.SIG_DFL)
        os.closerange(3, fd)
        os.closerange(fd + 1, 1 << 16)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.close(null)
        if not confined:  # (a spare did these steps before it was claimed)
            os.setsid()
            if self.jail:
                from . import jail

                jail.confine_instance(int(spec.get("tmp_mb", 64)))
        mem = int(spec.get("memory_mb", 0))
        if mem and spec.get("rlimit_as", True):
            limit = self.baseline_vm + mem * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if spec.get("nproc"):  # rootless, no cgroup: processes of its own user namespace
            resource.setrlimit(resource.RLIMIT_NPROC, (spec["nproc"], spec["nproc"]))
        for key in list(os.environ):  # clear(), without popitem's KeyError at the end
            del os.environ[key]
        os.environ.update(spec.get("env", {}))
        os.chdir(spec["code_dir"])
        if spec.get("deps_dir"):
            _add_dependencies(spec["deps_dir"])
        for folder in spec.get("layer_paths") or ():  # /opt/python..., as on Lambda
            if folder not in sys.path:
                sys.path.append(folder)
        if spec.get("sdk_dir"):  # the runtime's boto3, after the function's own (its pin wins)
            sys.path.append(spec["sdk_dir"])
        sys.path.insert(0, spec["code_dir"])
        if spec.get("bootstrap"):  # a runtime of its own, behind the Lambda Runtime API
            from .runtime_api import serve

            serve(socket.socket(fileno=fd), spec, t_start)
        from .instance import Instance

        inst = Instance(socket.socket(fileno=fd), spec)
        inst.init(t_start)
        inst.serve()


def _kill_group(pid: int) -> None:
    """SIGKILL an instance and its process group (it is a session leader: what it forked and
    left running dies with it, where no pid namespace of its own does that: process, gvisor)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _add_dependencies(folder: str) -> None:
    """site.addsitedir, here in the instance (never in the zygote: .pth files are code). Without
    .pth files it amounts to appending the folder to sys.path, done directly: site's own path
    bookkeeping would write to much of the heap shared with the zygote."""
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    if any(name.endswith(".pth") and not name.startswith(".") for name in names):
        import site

        site.addsitedir(folder)


def enter_and_exec(config: dict) -> None:
    """Jailed tiers, first stage: build the sandbox (steps Z0-Z8), then replace this process by
    the interpreter mounted inside it (Z9). This stage was started by the host with host paths
    (its command line, the interpreter's own, its configuration); the zygote that serves, and
    every instance forked from it (whose /proc/1 it is), starts from neutral ones: its command
    line names /var/lang and /opt/dayfly, its environment is the one given for it, and what
    Python derives from its own location (sys.prefix, sys.path, module files) is in the
    sandbox. The channel's fd stays open across the exec; nothing else does."""
    from . import jail

    cfg = config["jail"]
    os.close(jail.enter_zygote_sandbox(cfg))
    inner = {"fd": config["fd"], "runtime_root": RUNTIME,
             "jail": {"entered": True, **{k: cfg[k] for k in _AFTER_EXEC if k in cfg}}}
    if "preload" in config:
        inner["preload"] = config["preload"]
    start = cfg["exec"]
    argv = [start["python"], "-I", "-S", "-B", "-c", start["boot"], json.dumps(inner)]
    os.execve(argv[0], argv, start["env"])


def main() -> None:
    config = json.loads(sys.argv[1])
    if config.get("jail") and "exec" in config["jail"]:
        enter_and_exec(config)  # does not return
    z = Zygote(config)
    z.warm()
    z.run()
