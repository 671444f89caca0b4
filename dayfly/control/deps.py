"""Per-function dependencies: `requirements.txt` installed once per content hash with pip."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import InvalidParameter
from ..modes import share_tree

Progress = Callable[[str], None]


class DepsError(InvalidParameter):
    """pip could not install the requirements; the message carries pip's own words."""


def deps_key(requirements: str) -> str:
    """Same requirements on the same Python share one directory."""
    norm = "\n".join(line.strip() for line in requirements.splitlines()
                     if line.strip() and not line.strip().startswith("#"))
    tag = f"{sys.implementation.cache_tag}-{sys.platform}"
    return hashlib.sha256(f"{tag}\n{norm}".encode()).hexdigest()[:32]


class DepsInstaller:
    """`deps/<key>/` directories; concurrent installs of the same key share one pip run."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "deps"
        self.tmp = data_dir / "tmp"
        self._running: dict[str, asyncio.Future] = {}

    def path(self, key: str) -> Path | None:
        p = self.root / key
        return p if p.is_dir() else None

    # -- collection: control/collector.py decides what goes, these only act ------------------

    def stored(self) -> set[str]:
        """Keys with a directory on disk."""
        return {p.name for p in self.root.iterdir() if not p.name.startswith(".")}

    def discard(self, key: str) -> None:
        """Take a directory out of use at once (renamed aside; removed by `remove_trash`)."""
        with contextlib.suppress(FileNotFoundError):  # a concurrent collection got there first
            os.rename(self.root / key, self.root / f".trash-{key}-{os.urandom(4).hex()}")

    def remove_trash(self) -> None:
        """Remove the directories `discard` set aside (also those a crash left)."""
        for p in self.root.glob(".trash-*"):
            shutil.rmtree(p, ignore_errors=True)

    def clean_tmp(self) -> None:
        """pip runs a crash interrupted (at start, before any deploy)."""
        for p in self.tmp.glob("deps-*"):
            shutil.rmtree(p, ignore_errors=True)

    async def install(self, requirements: str, cwd: Path | None = None,
                      progress: Progress | None = None) -> tuple[str, Path]:
        """Install (or reuse) the requirements; return (key, directory)."""
        key = deps_key(requirements)
        done = self.path(key)
        if done is not None:
            if progress:
                progress(f"dependencies cached ({key[:12]})")
            return key, done
        running = self._running.get(key)
        if running is not None:
            return key, await asyncio.shield(running)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._running[key] = fut
        try:
            path = await self._pip(key, requirements, cwd, progress)
            fut.set_result(path)
            return key, path
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            del self._running[key]

    async def _pip(self, key: str, requirements: str, cwd: Path | None,
                   progress: Progress | None) -> Path:
        staging = Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"deps-{key[:8]}-"))
        req = staging / ".requirements.txt"
        req.write_text(requirements)
        target = staging / "site"
        cmd = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
               "--no-warn-script-location", "--progress-bar", "off", "--target", str(target),
               "-r", str(req)]
        env = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "HTTP", "HTTPS", "NO_PROXY"))}
        env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"), HOME=str(staging),
                   PYTHONNOUSERSITE="1")
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=str(cwd or staging), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        tail: list[str] = []
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            tail = [*tail[-19:], line]
            if progress:
                progress(line)
        code = await proc.wait()
        try:
            if code != 0:
                errors = [t for t in tail if "ERROR" in t] or tail[-5:]
                raise DepsError("requirements.txt could not be installed: " + " | ".join(errors))
            final = self.root / key
            share_tree(target)  # instances (other uids) read it; pip wrote it with our umask
            try:
                os.rename(target, final)
            except OSError:
                if not final.is_dir():
                    raise
            return final
        finally:
            shutil.rmtree(staging, ignore_errors=True)
