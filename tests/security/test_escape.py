"""The escape battery: every attempt must be refused by every isolating tier available.

Each test runs hostile code as a real function instance and checks, from inside and from
the host, that the attempt failed and that the platform keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import sysconfig
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

import dayfly
from dayfly.platform import available_backends
from dayfly.sandbox.safe import SafeSandbox
from dayfly.types import FunctionSpec, InvokeRequest, Limits

ISOLATING = ["linux", "gvisor"]
# Attempts whose refusal is a mechanism of the linux tier (its seccomp filter, its per-instance
# pid namespace and cgroup, its egress relay). Under gVisor the same calls reach gVisor's own
# user-space kernel, not the host's, which is that tier's promise (docs/security.md).
linux_only = pytest.mark.parametrize("sandbox", ["linux"], indirect=True)

ATTACKS = r'''
import ctypes, errno, json, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def _err(fn):
    try:
        fn()
        return "ALLOWED"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def _sys(nr, *args):
    ret = libc.syscall(nr, *args)
    return "ALLOWED" if ret >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")

def handler(event, context):
    op = event["op"]
    if op == "proc":
        return sorted(p for p in os.listdir("/proc") if p.isdigit())
    if op == "read":
        return _err(lambda: open(event["path"], "rb").read(1))
    if op == "exists":
        return os.path.exists(event["path"])
    if op == "write":
        return _err(lambda: open(event["path"], "w").write("x"))
    if op == "connect":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        return _err(lambda: s.connect((event["host"], event["port"])))
    if op == "listen":  # kept open after the invocation, for a sibling to look for
        global LISTENING
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", event["port"]))
        tcp.listen()
        unix = socket.socket(socket.AF_UNIX)
        unix.bind("\0" + event["name"])  # abstract: scoped by the network namespace
        unix.listen()
        LISTENING = (tcp, unix)
        return "listening"
    if op == "echo":  # a plain TCP client: a name resolves as any client's would
        try:
            s = socket.create_connection((event["host"], event["port"]), timeout=5)
            s.sendall(b"ping")
            return s.recv(100).decode() or "EOF"
        except socket.gaierror:
            return "GAIERROR"
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e))
    if op == "resolve":
        try:
            return sorted({a[4][0] for a in socket.getaddrinfo(event["host"], 80)})
        except socket.gaierror as e:
            return f"GAIERROR {e.errno}"
    if op == "connect_unix":
        s = socket.socket(socket.AF_UNIX)
        return _err(lambda: s.connect("\0" + event["name"]))
    if op == "proxy":
        s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
        s.sendall(f"CONNECT {event['target']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = s.recv(4096).decode()
        if head.startswith("HTTP/1.1 200"):
            s.sendall(b"ping")
            return {"status": 200, "echo": s.recv(100).decode()}
        return {"status": int(head.split()[1]), "body": head}
    if op == "caps":
        status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines()
                      if ":\t" in l)
        return {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                               "NoNewPrivs", "Seccomp", "Uid")}
    if op == "setuid0":
        return _err(lambda: os.setuid(0))
    if op == "syscall":
        return _sys(event["nr"], *event.get("args", []))
    if op == "mount":
        return _sys(165, b"none", b"/tmp", b"tmpfs", 0, None)
    if op == "raw":
        return _err(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    if op == "packet":
        return _err(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
    if op == "env":
        return dict(os.environ)
    if op == "fds":
        return {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")}
    if op == "alloc":
        blob = bytearray(event["mb"] * 1024 * 1024)
        return len(blob)
    if op == "forkbomb":
        n = 0
        try:
            for _ in range(10000):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
        except OSError as e:
            return {"forked": n, "error": errno.errorcode.get(e.errno)}
        return {"forked": n, "error": None}
    if op == "filltmp":
        written = 0
        try:
            with open("/tmp/fill", "wb") as f:
                for _ in range(event["mb"]):
                    f.write(b"x" * 1024 * 1024)
                    written += 1
                f.flush()
        except OSError as e:
            return {"written_mb": written, "error": errno.errorcode.get(e.errno)}
        return {"written_mb": written, "error": None}
    if op == "killall":
        os.kill(-1, 9)
        return "survived"
    if op == "identity":
        return {"host": socket.gethostname(), "uid": os.getuid(), "pid": os.getpid(),
                "uid_map": open("/proc/self/uid_map").read().split()}
    if op == "listdir":
        return _err(lambda: os.listdir(event["path"])) if not os.path.isdir(event["path"]) \
            else sorted(os.listdir(event["path"]))
    if op == "view":  # everything that names paths: what the kernel shows, what Python derived
        def text(path):
            try:
                with open(path, "rb") as f:
                    return f.read().decode(errors="replace")
            except OSError as e:
                return errno.errorcode.get(e.errno, "?")
        def listing(path):
            try:
                return sorted(os.listdir(path))
            except OSError as e:
                return errno.errorcode.get(e.errno, "?")
        return {"cmdline": text("/proc/1/cmdline"), "self_cmdline": text("/proc/self/cmdline"),
                "mountinfo": text("/proc/self/mountinfo"), "mounts": text("/proc/self/mounts"),
                "environ": text("/proc/self/environ"), "environ1": text("/proc/1/environ"),
                "maps": text("/proc/self/maps"), "exe": os.readlink("/proc/self/exe"),
                "cwd": os.getcwd(), "sys.path": sys.path, "sys.executable": sys.executable,
                "prefixes": [sys.prefix, sys.exec_prefix, sys.base_prefix],
                "modules": sorted(getattr(m, "__file__", None) or "" for m in
                                  list(sys.modules.values())),
                "root": listing("/"), "listed": {p: listing(p) for p in event["paths"]},
                "child": __import__("subprocess").run(  # the interpreter runs for its uid too
                    [sys.executable, "-c", "import sys; print(sys.prefix)"],
                    capture_output=True, text=True).stdout.strip()}
    return None
'''


@pytest.fixture(params=ISOLATING)
async def sandbox(request, tmp_path):
    cls = available_backends().get(request.param)
    if cls is None:
        pytest.skip(f"isolation tier {request.param!r} is not available on this machine")
    sb = SafeSandbox(cls(tmp_path / "data"))
    sb.tier = request.param  # type: ignore[attr-defined]
    sb.data_dir = tmp_path / "data"  # type: ignore[attr-defined]
    yield sb
    await sb.close()


@pytest.fixture
def code(tmp_path) -> str:
    d = tmp_path / "code" / uuid.uuid4().hex
    d.mkdir(parents=True)
    (d / "handler.py").write_text(textwrap.dedent(ATTACKS))
    return str(d)


def mkspec(sandbox, code: str, **kw) -> FunctionSpec:
    limits = kw.pop("limits", Limits(memory_mb=128, timeout_s=10, tmp_mb=16, pids=32))
    return FunctionSpec(name="attacker", version="$LATEST", revision="r", arn="arn",
                        handler="handler.handler", code_dir=code, isolation=sandbox.tier,
                        limits=limits, **kw)


async def attack(sandbox, h, **event):
    req = InvokeRequest(request_id=str(uuid.uuid4()), payload=json.dumps(event).encode(),
                        invoked_arn="arn")
    req.deadline_ms = int((time.time() + 10) * 1000)
    r = await sandbox.invoke(h, req, 10)
    return r, json.loads(r.payload)


@pytest.fixture
async def inst(sandbox, code):
    h = await sandbox.start(mkspec(sandbox, code), "victim")
    yield h
    await sandbox.stop(h)


@linux_only
async def test_host_and_sibling_pids_are_invisible(sandbox, code, inst):
    _, pids = await attack(sandbox, inst, op="proc")
    assert pids == ["1"]
    other = await sandbox.start(mkspec(sandbox, code), "sibling")
    _, pids2 = await attack(sandbox, other, op="proc")
    assert pids2 == ["1"]
    assert other.inst.pid != inst.inst.pid  # two processes on the host, each alone in its view
    await sandbox.stop(other)


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc/passwd-", "/root/.bashrc",
                                  "/proc/1/root/etc/shadow", "/home", "/work", "/var/lib"])
async def test_host_files_are_unreachable(sandbox, inst, path):
    _, result = await attack(sandbox, inst, op="read", path=path)
    assert result != "ALLOWED"


async def test_dayfly_data_and_other_functions_code_are_unreachable(sandbox, inst, tmp_path):
    data = str(sandbox.data_dir)
    other = tmp_path / "code"
    for path in (data, f"{data}/runtime", str(other), "/opt/dayfly/../../" + data.lstrip("/")):
        _, exists = await attack(sandbox, inst, op="exists", path=path)
        assert exists is False, path


async def test_an_instance_sees_only_its_own_paths(sandbox, tmp_path):
    """Nothing an instance can read names the data dir, the code's or the dependencies' hash
    directories, the interpreter's host install or the platform's site-packages (issue 12,
    point 6): not /proc/1/cmdline, mountinfo, environ, maps or /proc/self/exe, not sys.path,
    sys.executable, sys.prefix or module files; and the platform's site-packages cannot be
    listed, at its host path or in the sandbox's standard library."""
    code = tmp_path / "code" / uuid.uuid4().hex
    deps = tmp_path / "deps" / uuid.uuid4().hex
    code.mkdir(parents=True)
    deps.mkdir(parents=True)
    (code / "handler.py").write_text(textwrap.dedent(ATTACKS))
    (deps / "somedep.py").write_text("VALUE = 1\n")
    site = sysconfig.get_paths()["purelib"]
    platform = str(Path(dayfly.__file__).resolve().parent.parent)  # dayfly's own install
    h = await sandbox.start(mkspec(sandbox, str(code), deps_dir=str(deps)), "viewer")
    try:
        stdlib_site = "/var/lang/lib/python3.11/site-packages"  # masked where it exists
        _, seen = await attack(sandbox, h, op="view", paths=[site, platform, stdlib_site])
    finally:
        await sandbox.stop(h)
    host = {str(tmp_path), str(sandbox.data_dir.resolve()), code.name, deps.name, site,
            platform, os.path.realpath(sys.executable), sysconfig.get_paths()["stdlib"]}
    if sys.base_prefix not in ("/usr", "/usr/local"):  # else a prefix every system shares
        host |= {sys.base_prefix, os.path.realpath(sys.base_prefix)}
    views = {k: json.dumps(v) for k, v in seen.items() if k != "listed"}
    leaks = {(k, path) for k, text in views.items() for path in host if path in text}
    assert not leaks, (leaks, seen)
    assert seen["listed"][site] == "ENOENT" and seen["listed"][platform] == "ENOENT"
    assert seen["listed"][stdlib_site] in ([], "ENOENT")  # masked by an empty tmpfs
    assert seen["sys.executable"].startswith("/var/lang/") and seen["prefixes"][0] == "/var/lang"
    assert seen["child"] == "/var/lang"
    assert "/var/task" in seen["sys.path"] and "/var/deps" in seen["sys.path"]


@pytest.mark.parametrize("path", ["/x", "/var/task/evil.py", "/opt/dayfly/dayfly/evil.py",
                                  "/etc/passwd", "/usr/lib64/evil", "/dev/evil", "/proc/sys/kernel/hostname"])
async def test_nothing_outside_tmp_is_writable(sandbox, inst, path):
    _, result = await attack(sandbox, inst, op="write", path=path)
    assert result in ("EROFS", "EACCES", "ENOENT", "EPERM"), result
    _, ok = await attack(sandbox, inst, op="write", path="/tmp/fine")
    assert ok == "ALLOWED"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_host_loopback_services_are_unreachable(sandbox, inst):
    # PostgreSQL on this machine listens on 127.0.0.1:5432; the function must not reach it
    if not _listening(5432):
        pytest.skip("no service on 127.0.0.1:5432 to prove the point with")
    _, result = await attack(sandbox, inst, op="connect", host="127.0.0.1", port=5432)
    assert result == "ECONNREFUSED"  # its own empty loopback, not the host's


@linux_only
async def test_sibling_instances_have_separate_networks(sandbox, code, inst):
    """Each instance has a network namespace of its own: what one listens on (TCP on its
    loopback, abstract unix sockets) its sibling of the same function cannot reach."""
    _, ok = await attack(sandbox, inst, op="listen", port=7777, name="dayfly-probe")
    assert ok == "listening"
    _, own = await attack(sandbox, inst, op="connect", host="127.0.0.1", port=7777)
    assert own == "ALLOWED"  # the probe works where the listener is
    sibling = await sandbox.start(mkspec(sandbox, code), "sibling-net")
    try:
        _, tcp = await attack(sandbox, sibling, op="connect", host="127.0.0.1", port=7777)
        assert tcp == "ECONNREFUSED"
        _, unix = await attack(sandbox, sibling, op="connect_unix", name="dayfly-probe")
        assert unix == "ECONNREFUSED"
    finally:
        await sandbox.stop(sibling)


async def test_no_route_out(sandbox, inst):
    _, result = await attack(sandbox, inst, op="connect", host="192.0.2.1", port=443)
    assert result in ("ENETUNREACH", "EHOSTUNREACH"), result


class _Echo:
    """A TCP echo server on host loopback (or `host`), standing in for a declared service."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(100))


@linux_only
async def test_declared_egress_only(sandbox, code):
    allowed, denied = _Echo(), _Echo()
    spec = mkspec(sandbox, code, network=(f"127.0.0.1:{allowed.port}",))
    h = await sandbox.start(spec, "egress")
    try:
        _, ok = await attack(sandbox, h, op="proxy", target=f"127.0.0.1:{allowed.port}")
        assert ok == {"status": 200, "echo": "ping"}
        _, no = await attack(sandbox, h, op="proxy", target=f"127.0.0.1:{denied.port}")
        assert no["status"] == 403 and "not declared" in no["body"]
        _, direct = await attack(sandbox, h, op="connect", host="127.0.0.1", port=denied.port)
        assert direct == "ECONNREFUSED"
        _r, env = await attack(sandbox, h, op="env")
        assert env["HTTPS_PROXY"] == "http://127.0.0.1:3128"
    finally:
        await sandbox.stop(h)
        allowed.sock.close()
        denied.sock.close()


def _named_loopback() -> tuple[str, str]:
    """A name this machine resolves (its host name), and its address."""
    name = socket.gethostname()
    try:
        return name, socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve here")


async def test_declared_egress_is_native(sandbox, code):
    """A declared host:port takes a plain TCP connect, no proxy settings, at the address or by
    the name the manifest wrote (issue 16, point 5); the host relays it there. Another port
    at the same address, another host, a host loopback service not declared: refused. A name
    resolves only if it was declared."""
    name, address = _named_loopback()
    by_addr, by_name, v6, other = _Echo(), _Echo(address), _Echo("::1"), _Echo()
    spec = mkspec(sandbox, code, network=(f"127.0.0.1:{by_addr.port}", f"{name}:{by_name.port}",
                                          f"[::1]:{v6.port}"))
    h = await sandbox.start(spec, "native")
    try:
        for host, port in (("127.0.0.1", by_addr.port), (name, by_name.port), ("::1", v6.port)):
            _, echoed = await attack(sandbox, h, op="echo", host=host, port=port)
            assert echoed == "ping", (host, port, echoed)
        _, named = await attack(sandbox, h, op="resolve", host=name)
        assert named == ["127.1.0.1"]  # the declared name's own address inside
        for host, port in (("127.0.0.1", other.port), (name, other.port), ("::1", by_addr.port)):
            _, refused = await attack(sandbox, h, op="echo", host=host, port=port)
            assert refused == "ECONNREFUSED", (host, port, refused)
        if _listening(5432):  # a real host loopback service, not declared
            _, pg = await attack(sandbox, h, op="echo", host="127.0.0.1", port=5432)
            assert pg == "ECONNREFUSED"
        _, far = await attack(sandbox, h, op="echo", host="192.0.2.1", port=by_addr.port)
        assert far in ("ENETUNREACH", "EHOSTUNREACH"), far
        for undeclared in ("example.com", "dayfly-undeclared.internal"):
            _, unknown = await attack(sandbox, h, op="resolve", host=undeclared)
            assert unknown.startswith("GAIERROR"), (undeclared, unknown)
        _r, env = await attack(sandbox, h, op="env")
        if sandbox.tier == "gvisor":
            assert not any("proxy" in k.lower() for k in env)  # native only: no proxy there
        await sandbox.stop(h)
        # the next instance is served too (gVisor: the zygote, left without instances, killed
        # every other process in the sandbox, its forwarder included, and started it again)
        h = await sandbox.start(spec, "native-again")
        _, again = await attack(sandbox, h, op="echo", host=name, port=by_name.port)
        assert again == "ping"
    finally:
        await sandbox.stop(h)
        for echo in (by_addr, by_name, v6, other):
            echo.sock.close()


def _outside_address() -> str:
    """This machine's address on its way out (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: it picks the route
        except OSError:
            pytest.skip("this machine has no route out to have an address on")
        return s.getsockname()[0]


async def test_declared_address_off_loopback(sandbox, code):
    """An address that is not loopback is reached as written: the linux tier adds it to the
    instance namespace's lo; gVisor, whose sandbox has only its loopback, refuses it at start
    and says to declare a name."""
    address = _outside_address()
    echo = _Echo(address)
    spec = mkspec(sandbox, code, network=(f"{address}:{echo.port}",))
    try:
        if sandbox.tier == "gvisor":
            with pytest.raises(Exception, match="declare it by a name"):
                await sandbox.start(spec, "outside")
            return
        h = await sandbox.start(spec, "outside")
        try:
            _, echoed = await attack(sandbox, h, op="echo", host=address, port=echo.port)
            assert echoed == "ping"
            _, refused = await attack(sandbox, h, op="echo", host=address, port=echo.port + 1)
            assert refused == "ECONNREFUSED"
        finally:
            await sandbox.stop(h)
    finally:
        echo.sock.close()


@linux_only
async def test_no_capabilities_and_no_way_back(sandbox, inst):
    _, caps = await attack(sandbox, inst, op="caps")
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(caps[key], 16) == 0, (key, caps[key])
    assert caps["NoNewPrivs"] == "1" and caps["Seccomp"] == "2"
    _, result = await attack(sandbox, inst, op="setuid0")
    assert result in ("EPERM", "EINVAL")  # EINVAL: uid 0 does not even exist in its namespace
    _, ident = await attack(sandbox, inst, op="identity")
    assert ident["uid"] == 1000 and ident["pid"] == 1 and ident["host"] == "dayfly"
    if sandbox.backend.rootless:  # mapped to the zygote's one id: the unprivileged user's
        assert ident["uid_map"] == ["1000", "0", "1"]
        with open(f"/proc/{inst.inst.pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert os.getuid() != 0 and uids == [str(os.getuid())] * 4
    else:
        host_uid = int(ident["uid_map"][1])
        assert host_uid >= 200_000  # a dedicated unprivileged uid on the host


@linux_only
@pytest.mark.parametrize("name,nr,args", [
    ("ptrace", 101, [0, 0, 0, 0]),  # PTRACE_TRACEME
    ("init_module", 175, [0, 0, 0]),
    ("finit_module", 313, [0, 0, 0]),
    ("unshare", 272, [0x10000000]),
    ("setns", 308, [0, 0]),
    ("bpf", 321, [0, 0, 0]),
    ("keyctl", 250, [0, 0, 0]),
    ("perf_event_open", 298, [0, 0, -1, -1, 0]),
    ("kexec_load", 246, [0, 0, 0, 0]),
    ("reboot", 169, [0, 0, 0, 0]),
    ("clone_newns", 56, [0x00020000 | 17, 0, 0, 0, 0]),
    ("pivot_root", 155, [0, 0]),
    ("chroot", 161, [0]),
])
async def test_dangerous_syscalls_are_refused(sandbox, inst, name, nr, args):
    _, result = await attack(sandbox, inst, op="syscall", nr=nr, args=args)
    assert result == "EPERM", (name, result)


@linux_only
async def test_mount_is_refused(sandbox, inst):
    _, result = await attack(sandbox, inst, op="mount")
    assert result == "EPERM"


@linux_only
@pytest.mark.parametrize("op", ["raw", "packet"])
async def test_raw_and_packet_sockets_are_refused(sandbox, inst, op):
    _, result = await attack(sandbox, inst, op=op)
    assert result == "EPERM"


async def test_host_proc_is_not_visible(sandbox, inst):
    _, cmdline = await attack(sandbox, inst, op="read", path="/proc/1/cmdline")
    assert cmdline == "ALLOWED"  # pid 1 is the instance itself ...
    _, pids = await attack(sandbox, inst, op="proc")
    assert str(os.getpid()) not in pids  # ... and this test process is not there


async def test_host_environment_and_fds_are_not_inherited(sandbox, code, monkeypatch, tmp_path):
    monkeypatch.setenv("DAYFLY_HOST_MARKER", "secret")
    leak = open(tmp_path / "host-file", "w")  # noqa: SIM115 - an fd the host holds open
    try:
        h = await sandbox.start(mkspec(sandbox, code), "env")
        _, env = await attack(sandbox, h, op="env")
        assert "DAYFLY_HOST_MARKER" not in env
        _, fds = await attack(sandbox, h, op="fds")
        extra = {fd: target for fd, target in fds.items() if fd not in ("0", "1", "2")}
        # only the protocol channel (and the fd of the listing itself, already closed)
        assert len(extra) == 1 and next(iter(extra.values())).startswith("socket:"), fds
        assert fds["0"] == "/dev/null"
        await sandbox.stop(h)
    finally:
        leak.close()


async def test_memory_exhaustion_is_contained(sandbox, code, inst):
    r, err = await attack(sandbox, inst, op="alloc", mb=1024)
    assert r.error_type == "Unhandled"
    assert err["errorType"] == "Runtime.OutOfMemory"
    assert err["errorMessage"] == "out of memory (limit 128 MiB)"
    h = await sandbox.start(mkspec(sandbox, code), "after-oom")
    r2, ident = await attack(sandbox, h, op="identity")
    assert r2.ok and ident["host"] == "dayfly"  # the tier keeps serving
    await sandbox.stop(h)


@linux_only
async def test_instance_sits_in_its_own_cgroup_or_under_rlimits(sandbox, inst):
    backend = sandbox.backend
    with open(f"/proc/{inst.inst.pid}/cgroup") as f:
        lines = f.read().splitlines()
    if os.environ.get("DAYFLY_CGROUP_PARENT"):  # delegated (rootless or not): it is used
        assert backend.cgroups is not None
        assert os.environ["DAYFLY_CGROUP_PARENT"] in str(backend.cgroups.bases[0])
    if backend.cgroups is None:  # rootless with nothing delegated: rlimits (AS, NPROC)
        assert backend.rootless
        with open(f"/proc/{inst.inst.pid}/limits") as f:
            limits = f.read()
        assert any(line.startswith("Max processes") and line.split()[2] == "32"
                   for line in limits.splitlines()), limits
        return
    slot = inst.inst.backend_state.token.slot
    for d in slot.dirs:  # one slot of this backend's pool, in every controller it uses
        rel = d.relative_to("/sys/fs/cgroup").parts
        if backend.cgroups.v == 1:  # /sys/fs/cgroup/<controller>/<path>
            rel = rel[1:]
        assert any(line.endswith(":/" + "/".join(rel)) for line in lines), (d, lines)


@linux_only
async def test_fork_bomb_is_contained_and_reported(sandbox, inst):
    r, out = await attack(sandbox, inst, op="forkbomb")
    assert out["error"] == "EAGAIN" and out["forked"] < 32
    assert any("process limit reached" in line for line in r.logs)


async def test_tmp_is_size_limited(sandbox, inst):
    _, out = await attack(sandbox, inst, op="filltmp", mb=64)
    assert out["error"] == "ENOSPC" and out["written_mb"] <= 16


@linux_only
async def test_kill_everything_hurts_only_itself(sandbox, code, inst):
    other = await sandbox.start(mkspec(sandbox, code), "bystander")
    _r, _ = await attack(sandbox, inst, op="killall")
    r2, pids = await attack(sandbox, other, op="proc")
    assert r2.ok and pids == ["1"]
    await sandbox.stop(other)
    await asyncio.sleep(0)
