"""The syscall table and the seccomp program, checked without running anything privileged."""

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
    pid = jail.clone_fork(0)  # no namespaces: a plain fork through the same path
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
