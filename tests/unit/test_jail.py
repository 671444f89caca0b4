"""The syscall table and the seccomp program, checked without running anything privileged."""

import os
import re
import struct
from pathlib import Path

import pytest

from dayfly.runtime import jail

HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


@pytest.mark.skipif(not HEADER.exists(), reason="kernel headers not installed")
def test_syscall_numbers_match_the_kernel_headers():
    known = dict(re.findall(r"#define __NR_(\w+) (\d+)", HEADER.read_text()))
    for name, nr in jail.SYSCALLS.items():
        assert int(known[name]) == nr, name


def test_seccomp_program_is_well_formed():
    prog = jail.seccomp_program()
    assert len(prog) % 8 == 0
    n = len(prog) // 8
    assert n < 4096  # the kernel's BPF_MAXINSNS
    for i in range(n):
        code, jt, jf, _k = struct.unpack_from("HBBI", prog, i * 8)
        if code & 0x07 == 0x05:  # a jump: both targets must stay inside the program
            assert i + 1 + jt < n and i + 1 + jf < n, i
    last = struct.unpack_from("HBBI", prog, (n - 1) * 8)
    assert last[0] == 0x06  # it ends in a return


def test_every_denied_syscall_has_a_number():
    assert set(jail.DENIED) <= set(jail.SYSCALLS)


CLONED = r"""
import logging, os, random, threading
from dayfly.runtime import jail

r, w = os.pipe()
for _ in range(2):
    pid, _ = jail.clone_fork(0)  # no namespaces: a plain fork through the same path
    if pid == 0:  # the interpreter works: threads, imports, logging; random is its own
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
        import colorsys  # noqa: F401
        logging.getLogger("x").debug("fine")
        os.write(w, random.getrandbits(64).to_bytes(8, "big"))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
print(random.getrandbits(64), *(int.from_bytes(os.read(r, 8), "big") for _ in range(2)))
"""


@pytest.mark.skipif(not jail.supported()[0], reason="x86_64 Linux only")
def test_clone_fork_children_run_and_do_not_share_random_state():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CLONED], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert len(out) == 3 and len(set(out)) == 3, out


def _cgroup2_mount() -> str | None:
    with open("/proc/mounts") as f:
        return next((line.split()[1] for line in f if line.split()[2] == "cgroup2"), None)


@pytest.mark.skipif(not jail.supported()[0] or os.geteuid() != 0 or _cgroup2_mount() is None,
                    reason="needs root and a cgroup2 mount (v2, or v1's `unified`) on x86_64")
def test_clone_fork_starts_the_child_inside_a_v2_cgroup():
    # clone3(CLONE_INTO_CGROUP): born in the slot, never migrated (the v2 linux tier's path)
    mount = _cgroup2_mount()
    with open("/proc/self/cgroup") as f:
        mine = next(line for line in f if line.startswith("0::"))[3:].strip()
    target = os.path.join(mount, mine.lstrip("/"), f"dayfly-clone3-{os.getpid()}")
    os.mkdir(target)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        r, w = os.pipe()
        pid, born_in = jail.clone_fork(0, fd)
        if pid == 0:
            with open("/proc/self/cgroup") as f:
                os.write(w, f.read().encode())
            os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        seen = os.read(r, 65536).decode()
        os.close(r)
        assert os.waitstatus_to_exitcode(status) == 0
        assert born_in
        assert f"0::{mine.rstrip('/')}/dayfly-clone3-{os.getpid()}\n" in seen, seen
    finally:
        os.close(fd)
        os.rmdir(target)
