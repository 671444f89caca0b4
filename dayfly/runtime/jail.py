"""Every privileged call dayfly makes, in one module: namespaces, mounts, pivot_root,
capabilities, seccomp and the raw clone used to fork into fresh namespaces.

Nothing else in dayfly calls libc directly (tests/unit/test_architecture.py checks it).
It runs in the zygote (building the sandbox) and in the host (preparing network
namespaces), so it is standard library only. x86_64 only: the syscall numbers below
are that architecture's; `supported()` says so elsewhere. docs/security.md lists the
set-up steps in the order this code runs them.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import signal
import socket
import struct
import sys
from collections.abc import Sequence

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
            | CLONE_NEWPID | CLONE_NEWNET)

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2

# x86_64 syscall numbers (checked against asm/unistd_64.h by a test)
SYSCALLS = {
    "socket": 41, "clone": 56, "ptrace": 101, "syslog": 103, "capset": 126, "mknod": 133,
    "uselib": 134, "vhangup": 153, "pivot_root": 155, "adjtimex": 159, "chroot": 161,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172,
    "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "migrate_pages": 256, "mknodat": 259, "unshare": 272,
    "move_pages": 279, "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "seccomp": 317,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
    "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442, "quotactl_fd": 443,
}
# What a function has no business doing. Refused with EPERM so Python raises a clean error.
DENIED = (
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev",
    "kcmp", "pidfd_getfd", "process_madvise", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "keyctl", "add_key",
    "request_key", "bpf", "perf_event_open", "unshare", "setns", "syslog", "acct",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "iopl", "ioperm", "quotactl", "quotactl_fd", "lookup_dcookie",
    "name_to_handle_at", "open_by_handle_at", "userfaultfd", "fanotify_init", "vhangup",
    "uselib", "mknod", "mknodat", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "migrate_pages", "move_pages", "seccomp",
)
AUDIT_ARCH_X86_64 = 0xC000003E
AF_PACKET = 17
SOCK_RAW = 3

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def supported() -> tuple[bool, str]:
    """Whether this module can run here at all."""
    if platform.system() != "Linux":
        return False, "namespaces and seccomp need Linux"
    if platform.machine() != "x86_64":
        return False, f"the seccomp table is for x86_64, not {platform.machine()}"
    return True, "ok"


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def bind(source: str, target: str, *, readonly: bool = True, devices: bool = False) -> None:
    """Bind `source` at `target` (which must exist); read-only, nosuid, nodev by default."""
    mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if devices else MS_NODEV)
    if readonly:
        flags |= MS_RDONLY
    mount(None, target, None, flags)


def layer(source: str, target: str, empty: str) -> bool:
    """Show directory `source` read-only at `target` as an overlay of it and the empty directory
    `empty`, named by fds. A bind mount would do the same, but its line in mountinfo names the
    source's path inside its filesystem (the data dir, the code's hash, the interpreter's
    install); an overlay's names only "/" and its `lowerdir=` option, here /proc/self/fd/N.
    (Overlayfs needs two lower layers when it has no upper one.) Returns False, having bound
    `source` instead, where overlayfs is refused (no module; a lower filesystem it cannot
    stack on): the sandbox still works, and its mountinfo then shows that one path."""
    src = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    low = os.open(empty, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        mount("dayfly", target, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV,
              f"lowerdir=/proc/self/fd/{src}:/proc/self/fd/{low}")
        return True
    except OSError as exc:
        os.write(2, f"dayfly zygote: overlayfs refused ({exc.strerror}); bound {target} "
                    "instead\n".encode())
    finally:
        os.close(src)
        os.close(low)
    bind(source, target)
    return False


def umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def pivot_root(new_root: str) -> None:
    """Make `new_root` the root of this mount namespace and detach the old one entirely."""
    os.chdir(new_root)
    _check(_libc.syscall(SYSCALLS["pivot_root"], b".", b"."), "pivot_root")
    # the old root is now stacked under "."; detaching it leaves only the new root
    umount(".")
    os.chdir("/")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


CLONE_INTO_CGROUP = 0x200000000
_clone3_into = [True]  # until the kernel (< 5.7) or a seccomp filter says otherwise


def clone_fork(flags: int, cgroup: int = -1) -> tuple[int, bool]:
    """fork(2) into new namespaces: a raw clone with the interpreter's own fork hooks around it.
    Returns (pid, whether the child was born in the cgroup whose directory fd is `cgroup`).

    With a cgroup v2 directory fd, clone3(CLONE_INTO_CGROUP) starts the child there: no
    migration afterwards, so no write side of the kernel's global threadgroup lock (an RCU
    grace period that stalls every fork and exit meanwhile). Where clone3 or the flag is
    refused (kernels before 5.7; seccomp profiles that answer ENOSYS) the plain clone is used
    and the caller moves the child itself.

    os.fork() cannot pass CLONE_NEW* flags, and unshare(CLONE_NEWPID) works only once per
    process; a raw clone without CLONE_VM behaves like fork. The caller must be
    single-threaded (the zygote is), and the child relies on it: with no other thread, no lock
    can be left held by a thread that does not exist in the child, so PyOS_AfterFork_Child's
    re-creation of the GIL, of the runtime's locks and (through threading's and logging's
    after-fork hooks) of theirs is not needed. The child releases what PyOS_BeforeFork took
    (the import lock; logging's lock, by its parent hook) with PyOS_AfterFork_Parent, as the
    zygote does, and reseeds `random` if it is loaded (the one standard-library child hook
    that is not about locks). Those hooks run some 30 Python functions, and in a child every
    one of them copies pages shared with the zygote: 0.2 MiB per instance (SPECIFICATION.md).
    Signals the zygote had not handled yet at the clone may run its handlers (no-ops) once.
    """
    py = ctypes.pythonapi
    before, after = py.PyOS_BeforeFork, py.PyOS_AfterFork_Parent
    into = cgroup >= 0 and _clone3_into[0]
    before()
    if into:
        # struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2): flags, pidfd, child_tid,
        # parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup
        args = struct.pack("<11Q", flags | CLONE_INTO_CGROUP, 0, 0, 0, signal.SIGCHLD, 0, 0, 0,
                           0, 0, cgroup)
        pid = _libc.syscall(SYSCALLS["clone3"], args, len(args))
        if pid < 0 and ctypes.get_errno() in (errno.ENOSYS, errno.E2BIG, errno.EINVAL):
            _clone3_into[0] = into = False
    if not into:
        pid = _libc.syscall(SYSCALLS["clone"], signal.SIGCHLD | flags, 0, 0, 0, 0)
    if pid == 0:
        after()
        random = sys.modules.get("random")
        if random is not None:
            random.seed()
        return 0, into
    err = ctypes.get_errno()
    after()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid, into


def _cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 63


def drop_capabilities() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets."""
    for cap in range(_PREPARED["last_cap"] + 1):
        ret = _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        if ret < 0 and ctypes.get_errno() != errno.EINVAL:
            _check(ret, "PR_CAPBSET_DROP")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient caps")
    hbuf, dbuf = _PREPARED["capset"]
    _check(_libc.syscall(SYSCALLS["capset"], hbuf, dbuf), "capset")


def _prepare_capset() -> tuple[ctypes.Array, ctypes.Array]:
    """capset(2)'s arguments for "no capabilities at all" (the kernel only reads them)."""
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two empty __user_cap_data_struct
    return ctypes.create_string_buffer(header), ctypes.create_string_buffer(data)


def no_new_privs() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


# -- seccomp ----------------------------------------------------------------------------------

_LD_W_ABS, _JEQ, _JGE, _JSET, _AND, _RET = 0x20, 0x15, 0x35, 0x45, 0x54, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
_OFF_NR, _OFF_ARCH, _OFF_ARG0, _OFF_ARG1 = 0, 4, 16, 24


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def seccomp_program() -> bytes:
    """The BPF filter: wrong arch → kill; x32 → EPERM; DENIED → EPERM; clone with namespace
    flags → EPERM; clone3 → ENOSYS (libc falls back to clone, which is checked);
    packet and raw sockets → EPERM; everything else allowed."""
    eperm = _RET_ERRNO | errno.EPERM
    prog = [
        _ins(_LD_W_ABS, _OFF_ARCH),
        _ins(_JEQ, AUDIT_ARCH_X86_64, 1, 0),
        _ins(_RET, _RET_KILL),
        _ins(_LD_W_ABS, _OFF_NR),
        _ins(_JGE, 0x40000000, 0, 1),
        _ins(_RET, eperm),
        _ins(_JEQ, SYSCALLS["clone3"], 0, 1),
        _ins(_RET, _RET_ERRNO | errno.ENOSYS),
    ]
    for name in DENIED:
        prog += [_ins(_JEQ, SYSCALLS[name], 0, 1), _ins(_RET, eperm)]
    prog += [
        _ins(_JEQ, SYSCALLS["clone"], 0, 4),
        _ins(_LD_W_ABS, _OFF_ARG0),
        _ins(_JSET, NS_FLAGS, 0, 1),
        _ins(_RET, eperm),
        _ins(_RET, _RET_ALLOW),
        _ins(_JEQ, SYSCALLS["socket"], 0, 8),
        _ins(_LD_W_ABS, _OFF_ARG0),
        _ins(_JEQ, AF_PACKET, 0, 1),
        _ins(_RET, eperm),
        _ins(_LD_W_ABS, _OFF_ARG1),
        _ins(_AND, 0xF),
        _ins(_JEQ, SOCK_RAW, 0, 1),
        _ins(_RET, eperm),
        _ins(_RET, _RET_ALLOW),
        _ins(_RET, _RET_ALLOW),  # neither clone nor socket
    ]
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _prepare_seccomp() -> tuple[ctypes.Array, _SockFprog]:
    prog = seccomp_program()
    buf = ctypes.create_string_buffer(prog, len(prog))
    return buf, _SockFprog(len(prog) // 8, ctypes.addressof(buf))


def install_seccomp() -> None:
    """Load the filter; requires no_new_privs (or CAP_SYS_ADMIN) first."""
    _, fprog = _PREPARED["seccomp"]
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
           "seccomp")


# -- network namespaces (host side) -----------------------------------------------------------

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _loopback_up() -> None:
    """In a fresh network namespace: bring loopback up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


RTM_NEWADDR, NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 20, 1, 4, 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS, IFA_F_NODAD, RT_SCOPE_HOST = 1, 2, 8, 0x02, 254
NLMSG_ERROR = 2


def _add_address(address: str) -> None:
    """Add `address` (a host address: /32, /128) to this namespace's `lo` (rtnetlink
    RTM_NEWADDR), for a declared destination that is not on loopback already. IPv6 skips
    duplicate address detection, so the address is usable at once."""
    v6 = ":" in address
    family = socket.AF_INET6 if v6 else socket.AF_INET
    raw = socket.inet_pton(family, address)

    def attr(kind: int, data: bytes) -> bytes:
        size = 4 + len(data)
        return struct.pack("HH", size, kind) + data + bytes(-size % 4)

    body = struct.pack("BBBBI", family, 128 if v6 else 32, 0, RT_SCOPE_HOST,
                       socket.if_nametoindex("lo"))
    body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
    if v6:
        body += attr(IFA_FLAGS, struct.pack("I", IFA_F_NODAD))
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    msg = struct.pack("IHHII", 16 + len(body), RTM_NEWADDR, flags, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.sendall(msg)
        reply = nl.recv(4096)
    _, kind, _, _, _ = struct.unpack_from("IHHII", reply)
    err = -struct.unpack_from("i", reply, 16)[0] if kind == NLMSG_ERROR else 0
    if err:
        raise OSError(err, f"add {address} to lo: {os.strerror(err)}")


def _doors(listen: Sequence[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets at these addresses (the egress relay's doors), in this namespace."""
    doors: list[socket.socket] = []
    try:
        for address, port in listen:
            door = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                                 socket.SOCK_STREAM)
            doors.append(door)
            door.bind((address, port))
            door.listen(128)
    except OSError:
        for door in doors:
            door.close()
        raise
    return doors


def new_netns(listen: Sequence[tuple[str, int]] = (),
              addresses: Sequence[str] = ()) -> tuple[int, list[socket.socket]]:
    """Create an empty network namespace with loopback up (and `addresses` added to it);
    return an fd for it and sockets listening inside it at each of `listen` (the egress
    relay's doors: its HTTP proxy, and one per declared destination).

    Must run on a dedicated thread: unshare(CLONE_NEWNET) moves only the calling thread,
    and this function moves it back before returning.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(CLONE_NEWNET)
        try:
            _loopback_up()
            for address in addresses:
                _add_address(address)
            doors = _doors(listen)
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            setns(home, CLONE_NEWNET)
    finally:
        os.close(home)
    return fd, doors


def namespaces_work() -> bool:
    """Can this process make every namespace an instance gets (as root, or rootless)?

    Tried in a throwaway child: a user namespace first (which, without root, grants
    capabilities inside it), then the network, mount, pid, IPC and UTS namespaces owned by it.
    """
    pid = os.fork()
    if pid == 0:
        try:
            unshare(CLONE_NEWUSER)
            unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


# -- building the sandbox (zygote side) --------------------------------------------------------


def _touch(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            with open(path, "w"):
                pass


def enter_zygote_sandbox(cfg: dict) -> int:
    """Steps Z0-Z8 of docs/security.md: put this (trusted, still privileged) zygote in its own
    network, mount, IPC and UTS namespaces with a minimal read-only root (rootless: in its own
    user namespace first). Returns an fd of its network namespace, to come back to after
    making each instance's own (I1a)."""
    if cfg.get("rootless"):
        # Z0 (rootless): a user namespace of its own, in which this zygote is uid 0 with
        # capabilities that count only for namespaces it owns; host-wise it stays the
        # unprivileged user that started dayfly
        uid, gid = os.geteuid(), os.getegid()
        unshare(CLONE_NEWUSER)
        _write_id_maps("self", f"0 {uid} 1\n", f"0 {gid} 1\n")
        # Z1 (rootless): its own empty network namespace
        unshare(CLONE_NEWNET)
        _loopback_up()
    elif cfg.get("netns_fd") is not None:
        # Z1: the function's network namespace (empty; loopback only), prepared by the host
        setns(cfg["netns_fd"], CLONE_NEWNET)
        os.close(cfg["netns_fd"])
    # Z2: private mount, IPC and UTS namespaces; nothing propagates back to the host
    unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Z3: an empty tmpfs becomes the new root
    root = cfg["root"]
    os.makedirs(root, exist_ok=True)
    mount("dayfly-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for d in ("proc", "tmp", "dev", "etc", "var/task", "var/lang", "opt/python", "opt/dayfly"):
        os.makedirs(f"{root}/{d}", exist_ok=True)
    for link, target in cfg.get("symlinks", {}).items():
        os.symlink(target, f"{root}{link}")
    for path, text in cfg.get("files", {}).items():
        _touch(f"{root}{path}", False)
        with open(f"{root}{path}", "w") as f:
            f.write(text)
    # Z4: the interpreter and its standard library, the runtime, the function's code and
    # dependencies at neutral paths (overlays: nothing of their host paths shows, see `layer`;
    # `/tmp` of the new root is still empty here, and stays so under every instance's own);
    # then public system paths and the function's declared `files` at their own paths
    for src, dst in cfg.get("layers", []):
        os.makedirs(f"{root}{dst}", exist_ok=True)  # e.g. /var/runtime (inside the new root)
        layer(src, f"{root}{dst}", f"{root}/tmp")
    for src, dst in cfg["binds"]:
        _touch(f"{root}{dst}", os.path.isdir(src))
        bind(src, f"{root}{dst}")
    for path in cfg.get("masks", []):  # e.g. site-packages inside the standard library
        if os.path.isdir(f"{root}{path}"):
            mount("dayfly-mask", f"{root}{path}", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
                  "size=4k,mode=0555")
    # Z5: a minimal /dev: null, zero, random, urandom and nothing else
    mount("dayfly-dev", f"{root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for dev in ("null", "zero", "random", "urandom"):
        _touch(f"{root}/dev/{dev}", False)
        bind(f"/dev/{dev}", f"{root}/dev/{dev}", readonly=False, devices=True)
    mount(None, f"{root}/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    # Z6: a proc mount (instances cover it with their own; the kernel requires one to exist).
    # Rootless, the host's pid namespace is not ours to mount: its existing /proc is bound
    # instead (writable, as the kernel wants it fully visible before a new proc is mounted)
    if cfg.get("rootless"):
        mount("/proc", f"{root}/proc", None, MS_BIND | MS_REC)
    else:
        mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Z7: pivot into the new root, detach the host's, make the root read-only
    pivot_root(root)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # Z8: a hostname that says nothing about the host
    sethostname("dayfly")
    return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def enter_netns(fd: int) -> None:
    """Zygote side of step I1a: move this (single-threaded) zygote into a namespace made ahead
    by `new_netns` (empty, loopback up, the relay's doors inside when the function has
    egress) for the child it is about to clone. The zygote goes home (`return_to_netns`)
    right after the clone; the namespace then belongs to the child and to the host's relay."""
    setns(fd, CLONE_NEWNET)


def return_to_netns(home_fd: int) -> None:
    setns(home_fd, CLONE_NEWNET)


def _write_id_maps(pid: int | str, uid_map: str, gid_map: str) -> None:
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(uid_map)
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(gid_map)


def map_ids(pid: int, uid: int, gid: int, inner: int = 1000) -> None:
    """Zygote side of step I1: map the instance's inner id to its dedicated host uid/gid
    (rootless: to the zygote's own id, the only one its user namespace has)."""
    _write_id_maps(pid, f"{inner} {uid} 1\n", f"{inner} {gid} 1\n")


def confine_instance(tmp_mb: int, inner_id: int = 1000) -> None:
    """Steps I2-I6 in the new instance, which is pid 1 of fresh user, pid, mount, IPC and
    UTS namespaces and holds capabilities only inside its own user namespace."""
    # I2: its own /proc (only its own processes), its own size-limited /tmp
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=1777")
    # I3: become the unprivileged user the zygote mapped (its own host uid), then drop every
    # capability in every set, with no way to regain them
    os.setresgid(inner_id, inner_id, inner_id)
    os.setresuid(inner_id, inner_id, inner_id)
    drop_capabilities()
    no_new_privs()
    # I4: the seccomp filter (after this, no mount, ptrace, unshare, raw sockets, ...)
    install_seccomp()


# Built once in the zygote, before it freezes its heap: each instance only makes the calls.
_PREPARED: dict = {"last_cap": _cap_last_cap(), "seccomp": _prepare_seccomp(),
                   "capset": _prepare_capset()}
