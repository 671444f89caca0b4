"""Per-function dependencies: `requirements.txt` installed once per content hash with pip,
shared with other nodes as a tar through a SharedCode backend (shared_code.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import InvalidParameter
from ..modes import share_tree
from ..sandbox import lang
from .shared_code import SharedCode

Progress = Callable[[str], None]


class DepsError(InvalidParameter):
    """pip could not install the requirements; the message carries pip's own words."""


def deps_key(requirements: str, runtime: str | None = None) -> str:
    """Same requirements on the same Python ("python3.12"; None: dayfly's own) share one
    directory."""
    norm = "\n".join(line.strip() for line in requirements.splitlines()
                     if line.strip() and not line.strip().startswith("#"))
    cache_tag = (f"cpython-{runtime.removeprefix('python').replace('.', '')}"
                 if runtime and runtime.startswith("python") else sys.implementation.cache_tag)
    tag = f"{cache_tag}-{sys.platform}"
    return hashlib.sha256(f"{tag}\n{norm}".encode()).hexdigest()[:32]


class DepsInstaller:
    """`deps/<key>/` directories; concurrent installs of the same key share one pip run."""

    def __init__(self, data_dir: Path, shared: SharedCode | None = None) -> None:
        self.root = data_dir / "deps"
        self.tmp = data_dir / "tmp"
        self.shared = shared or SharedCode()
        self._running: dict[str, asyncio.Future] = {}
        self._fetching: dict[str, asyncio.Future[bool]] = {}  # on the event loop only

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
                      progress: Progress | None = None,
                      runtime: str | None = None) -> tuple[str, Path]:
        """Install (or reuse, or fetch from another node) the requirements with the
        interpreter of `runtime`, and make them available to every node; return (key, dir)."""
        key = deps_key(requirements, runtime)
        done = self.path(key)
        if done is None and await self.ensure(key):
            done = self.path(key)
        if done is not None:
            if progress:
                progress(f"dependencies cached ({key[:12]})")
            await self._share(key, done)
            return key, done
        running = self._running.get(key)
        if running is not None:
            return key, await asyncio.shield(running)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._running[key] = fut
        try:
            python = lang.find(runtime).executable if runtime else sys.executable
            path = await self._pip(key, requirements, cwd, progress, python)
            await self._share(key, path)
            fut.set_result(path)
            return key, path
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            del self._running[key]

    async def share(self, key: str) -> None:
        """Make a dependency set on this node's disk available to every node, unless it is."""
        path = self.path(key)
        if path is not None:
            await self._share(key, path)

    async def _share(self, key: str, path: Path) -> None:
        """Store the installed tree as `deps/<key>` (a tar) in the shared store, unless there."""
        if await self.shared.has(f"deps/{key}"):  # one node: always, so no tar is built
            return
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=f"deps-{key[:8]}-", suffix=".tar")
        os.close(fd)
        try:
            await asyncio.to_thread(_tar, path, Path(tmp))
            await self.shared.put(f"deps/{key}", Path(tmp))
        finally:
            os.unlink(tmp)

    async def ensure(self, key: str) -> bool:
        """Whether the dependency set is on this node's disk, fetching it from the shared store
        the first time (concurrent callers share one fetch)."""
        if self.path(key) is not None:
            return True
        running = self._fetching.get(key)
        if running is None:
            running = self._fetching[key] = asyncio.ensure_future(self._fetch(key))
            running.add_done_callback(lambda _: self._fetching.pop(key, None))
        return await asyncio.shield(running)

    async def _fetch(self, key: str) -> bool:
        staging = Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"deps-{key[:8]}-"))
        try:
            fd = os.open(staging / "site.tar", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if not await self.shared.get(f"deps/{key}", fd):
                    return False
            finally:
                os.close(fd)
            await asyncio.to_thread(_untar, staging / "site.tar", staging / "site")
            try:
                os.rename(staging / "site", self.root / key)
            except OSError:
                if self.path(key) is None:
                    raise
            return True
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def _pip(self, key: str, requirements: str, cwd: Path | None,
                   progress: Progress | None, python: str) -> Path:
        staging = Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"deps-{key[:8]}-"))
        req = staging / ".requirements.txt"
        req.write_text(requirements)
        target = staging / "site"
        cmd = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
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


def _tar(tree: Path, dest: Path) -> None:
    with tarfile.open(dest, "w") as tf:
        tf.add(tree, arcname=".")


def _untar(src: Path, dest: Path) -> None:
    """Unpack a shared tree; the `data` filter refuses links out of it, devices and absolute
    or `..` paths, whoever wrote the tar."""
    with tarfile.open(src) as tf:
        tf.extractall(dest, filter="data")
    share_tree(dest)  # instances (other uids) read it
