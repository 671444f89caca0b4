"""What a zygote does just before it freezes its heap, so that its instances copy little of it.

After a fork every page an instance writes becomes its own copy, and CPython 3.11 writes a
page for far less than a Python-level change: any reference count, the first calls of a
function (its bytecode is specialized in place), a miss in the type-attribute cache, an
object allocated in a free slot of a shared pool. So, in the zygote:

1. `rehearse` runs the code every instance runs at start (the interpreter's at-fork hooks,
   the environment swap, the output wiring, a module import, the READY frame) and makes the
   objects every instance's output goes through: that code is then specialized and its caches
   filled once, in shared pages, instead of in every instance.
2. `fill_pools` takes every free slot of the partly used pymalloc pools, so that an
   instance's own new objects go to fresh pools, packed, instead of one into each shared page.

Measured with benchmarks/density.py (docs/SPECIFICATION.md, issue 3).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import threading

from . import instance

_REPEAT = 10  # a function is quickened at its 8th call (3.11); more measured no smaller


def rehearse(times: int = _REPEAT) -> None:
    """Run an instance's start-up code paths here, harmlessly, `times` times."""
    for _ in range(times):
        _at_fork_hooks()
        _environment_swap()
    instance.prepare()
    instance.rehearse(times)


def _at_fork_hooks() -> None:
    """What PyOS_AfterFork_Child runs in every child (threading's and logging's hooks). In a
    single-threaded process they only replace locks with equivalent new ones."""
    after_fork = getattr(threading, "_after_fork", None)
    reinit = getattr(logging, "_after_at_fork_child_reinit_locks", None)
    if after_fork is not None:
        after_fork()
    # what logging's before-fork hook does in the parent (3.13 renamed it _prepareFork)
    acquire = getattr(logging, "_acquireLock", None) or getattr(logging, "_prepareFork", None)
    if reinit is not None and acquire is not None:
        acquire()
        reinit()


def _environment_swap() -> None:
    """An instance's swap of os.environ (delete every variable, then `update`), on a throwaway
    mapping of the same class (the real putenv/unsetenv run, on a variable nobody reads)."""
    env = os.environ
    with contextlib.suppress(Exception):
        scratch = type(env)({}, env.encodekey, env.decodekey,  # type: ignore[attr-defined]
                            env.encodevalue, env.decodevalue)  # type: ignore[attr-defined]
        scratch.update({"_DAYFLY_PREFORK": "1"})
        for key in list(scratch):
            del scratch[key]


def fill_pools(rounds: int = 3) -> list:
    """Allocate an object into every free slot of the partly used pymalloc pools; returns them
    (keep them alive). Free slots are read from sys._debugmallocstats, per size class."""
    keep: list = []
    for _ in range(rounds):
        free = _free_slots()
        total = sum(n for _, n in free)
        if not total:
            break
        batch: list = [None] * total
        i = 0
        for size, n in free:
            for _ in range(n):
                batch[i] = _object_of(size, i)
                i += 1
        keep.append(batch)
    return keep


def _object_of(size: int, i: int) -> object:
    """A new object whose pymalloc block is `size` bytes (a multiple of 16, up to 512)."""
    if size <= 16:
        return object()
    if size <= 32:
        return float(i) + 0.5  # 24 bytes
    return bytes(size - 33)  # a bytes object takes 33 + len bytes


def _free_slots() -> list[tuple[int, int]]:
    """(block size, free blocks in pools in use) per size class; [] if not CPython's layout."""
    if not hasattr(sys, "_debugmallocstats"):
        return []
    r, w = os.pipe()
    with contextlib.suppress(OSError):  # a few KiB of text; room to spare, never a blocked write
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
    saved = os.dup(2)
    try:
        os.dup2(w, 2)  # the statistics are printed on C's stderr
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    out = []
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        fields = line.split()  # class, size, pools, blocks in use, free blocks
        if len(fields) == 5 and all(f.isdigit() for f in fields):
            out.append((int(fields[1]), int(fields[4])))
    return out
