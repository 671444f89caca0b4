"""A function's layers as Lambda shows them: their contents merged into one read-only /opt.

Lambda extracts each layer into /opt in the function's order, a later layer's file replacing
an earlier one's; here the merge is a tree of hard links, `<data dir>/opt/<hash>`, made once
per set of layers and shared by every function with that set. Python finds
/opt/python/lib/pythonX.Y/site-packages and /opt/python (in that order) after the function's
own dependencies and before the runtime's boto3.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ..modes import share_tree

OPT = "/opt"
# mount points the jailed tiers put inside /opt (the runtime copy): present in every merge
MOUNT_POINTS = ("dayfly",)


def merged(data_dir: Path, layers: tuple[str, ...]) -> Path:
    """The merge of `layers` (host folders, in order), made if absent."""
    name = hashlib.sha256("\0".join(os.path.basename(p) for p in layers).encode()).hexdigest()
    target = Path(data_dir) / "opt" / name[:24]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".opt-", dir=target.parent))
    for layer in layers:
        for dirpath, _dirs, files in os.walk(layer):
            rel = os.path.relpath(dirpath, layer)
            dest_dir = work / rel
            dest_dir.mkdir(parents=True, exist_ok=True)
            for f in files:
                src, dest = os.path.join(dirpath, f), dest_dir / f
                if dest.is_symlink() or dest.exists():
                    dest.unlink()  # a later layer's file replaces an earlier one's
                if os.path.islink(src):
                    continue  # unpacked bundles hold no links; never follow one out
                try:
                    os.link(src, dest)
                except OSError:
                    shutil.copy2(src, dest)
    for point in MOUNT_POINTS:
        (work / point).mkdir(exist_ok=True)
    share_tree(work)
    try:
        os.rename(work, target)
    except OSError:  # made meanwhile by another start
        shutil.rmtree(work, ignore_errors=True)
    return target


def python_paths(root: str, runtime: str) -> list[str]:
    """What Lambda puts on sys.path for layers, under `root` (/opt, or the merge's host path)."""
    version = runtime.removeprefix("python")
    paths = [f"{root}/python/lib/python{version}/site-packages"] if runtime.startswith(
        "python") else []
    return [*paths, f"{root}/python"]
