"""The runtime-level boto3, as Lambda's Python runtime provides it at /var/runtime.

One read-only copy per node, made from the distributions installed with dayfly (boto3 is
pinned in pyproject.toml) by hard links where the filesystem allows; each interpreter that
uses it compiles it once. Instances find it on sys.path after the function's own
dependencies, so a function that pins its own boto3 or botocore gets its pin.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from ..modes import share_tree

SDK = "/var/runtime"  # where jailed instances see it (Lambda's own path)
ROOT_DIST = "boto3"
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_staging = threading.Lock()


def _closure(root: str) -> list[md.Distribution]:
    """`root` and what it requires, without extras (the runtime boto3 has no CRT)."""
    seen: dict[str, md.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        dist = md.distribution(name)
        seen[name] = dist
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            match = _NAME.match(req.strip())
            if match:
                todo.append(match.group(0))
    return list(seen.values())


def version() -> str:
    return md.version(ROOT_DIST)


def where(data_dir: Path) -> Path:
    """Where `stage` puts the copy."""
    return Path(data_dir) / "sdk" / f"{ROOT_DIST}-{version()}"


def stage(data_dir: Path) -> Path:
    """`<data>/sdk/boto3-<version>`, made on first use (by the first zygote that needs it, not
    at start: a node that runs nothing pays nothing), replaced whole if a crash left it half."""
    target = where(data_dir)
    with _staging:  # the tiers' first zygotes may ask at once, from threads
        if not (target / ".complete").is_file():
            _make(target)
    return target


def _make(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o755)
    for left in target.parent.glob(".sdk-*"):  # a crash's half-made copies
        shutil.rmtree(left, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=".sdk-", dir=target.parent))
    for dist in _closure(ROOT_DIST):
        for rel in dist.files or []:
            parts = Path(rel).parts
            if ".." in parts or rel.is_absolute() or parts[0] == "bin":
                continue  # scripts and files installed outside site-packages
            src = Path(str(dist.locate_file(rel)))
            if not src.is_file():
                continue
            dest = work / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dest)
            except OSError:  # another filesystem: a copy
                shutil.copyfile(src, dest)
    (work / ".complete").write_text(version())
    share_tree(work)
    if target.exists():  # without .complete: what a crash left half made
        aside = target.with_name(f".sdk-old-{os.getpid()}")
        os.replace(target, aside)
        shutil.rmtree(aside, ignore_errors=True)
    os.replace(work, target)


def compile_soon(target: Path, python: str) -> None:
    """`compile_for` in a thread of its own: no start waits for it. py_compile writes each
    .pyc atomically, so an instance importing meanwhile reads a whole one or compiles itself."""
    threading.Thread(target=compile_for, args=(target, python), daemon=True,
                     name="dayfly-sdk-compile").start()


def compile_for(target: Path, python: str) -> None:
    """Byte-compile the copy for `python` once (its own __pycache__ tags; instances then
    read it read-only). A failure only costs instances the compile at import."""
    mark = target / f".compiled-{os.path.basename(python)}"
    if mark.is_file():
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([python, "-I", "-m", "compileall", "-q", "-j", "0", str(target)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                       check=True)
        share_tree(target)
        mark.write_text("")
