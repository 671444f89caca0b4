"""Run a command as an unprivileged user (nobody) that can still reach this interpreter.

Usage (as root): unshare --mount --propagation private python unprivileged.py CMD...

The rootless tests need a real non-root process, with no capabilities, running this
interpreter and this checkout. Where the interpreter lives under a directory other users
cannot enter (pyenv under /root, mode 0700), this script, inside the private mount
namespace `unshare` gave it, covers that directory with an empty world-enterable tmpfs and
binds back only the entries on the needed paths. Nothing outside the namespace changes, and
the namespace ends with the command.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import sysconfig
import tempfile

NOBODY = 65534


def _blocked(path: str) -> tuple[str, str] | None:
    """The first ancestor of `path` others cannot enter, and the entry under it on the way."""
    parts = os.path.realpath(path).strip("/").split("/")
    for i in range(len(parts) - 1):
        parent = "/" + "/".join(parts[:i])
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent, parts[i]
    return None


def _open_paths(paths: list[str]) -> None:
    """Cover each blocked directory on the paths, outermost first, until none is left (a
    blocked directory can sit below another one)."""
    stage = tempfile.mkdtemp(prefix="dayfly-unpriv-")
    made = 0
    for _ in range(32):  # a path has fewer levels than this
        covers: dict[str, set[str]] = {}
        for p in paths:
            hit = _blocked(p)
            if hit:
                covers.setdefault(hit[0], set()).add(hit[1])
        if not covers:
            return
        for parent, entries in covers.items():
            held = []
            for entry in sorted(entries):
                src = os.path.join(parent, entry)
                tmp = os.path.join(stage, str(made))
                made += 1
                os.makedirs(tmp)
                subprocess.run(["mount", "--bind", src, tmp], check=True)
                held.append((entry, tmp))
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "dayfly-open",
                            parent], check=True)
            for entry, tmp in held:
                os.makedirs(os.path.join(parent, entry))
                subprocess.run(["mount", "--bind", tmp, os.path.join(parent, entry)],
                               check=True)
                subprocess.run(["umount", tmp], check=True)
    raise RuntimeError(f"could not open the way to {paths}")


def main() -> None:
    cmd = sys.argv[1:]
    paths = [sys.executable, sys.prefix, sys.base_prefix, os.getcwd(),
             *sysconfig.get_paths().values(), *[p for p in sys.path if p]]
    _open_paths([p for p in paths if os.path.exists(p)])
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)  # drops every capability with root
    env = {k: v for k, v in os.environ.items() if k.startswith(("DAYFLY_", "PYTEST_"))}
    env.update(PATH="/usr/bin:/bin", HOME="/tmp", LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1")
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
