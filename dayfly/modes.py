"""File modes: what dayfly writes is its owner's only (`dayfly up` sets umask 077), except the
trees that sandboxed uids read through bind mounts (runtime, dependencies, gVisor roots),
which are opened explicitly, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
SANDBOX_UMASK = 0o022  # zygotes: the directories of their jails must be enterable by instances


def share_tree(root: Path) -> None:
    """Make a tree readable (and its directories enterable) by every uid; only the owner
    writes. Executable files stay executable; links are left alone."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)


def create_private_once(path: Path, content: bytes) -> None:
    """Write `content` to a new owner-only (0600) file at `path`, unless one is there: through
    a temp file linked into place, so it is never seen half-written, and of two starts racing,
    one file wins and both read it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
