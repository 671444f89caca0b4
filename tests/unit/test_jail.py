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
