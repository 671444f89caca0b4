"""Code bundles: zips stored by content hash and unpacked once, read-only (checks: unzip.py);
shared with other nodes through a SharedCode backend (shared_code.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import unzip
from .shared_code import SharedCode

MAX_COMPILE = 2 * 1024 * 1024  # bytes of one module compiled at deploy; larger ones on import
COMPILE_CPU_S = 60  # CPU seconds the deploy-time compile may take, all modules together
COMPILE_MEMORY = 1024 * 1024 * 1024  # bytes of address space it may use


@dataclass(frozen=True, slots=True)
class Bundle:
    """A stored, unpacked code bundle."""

    hexdigest: str  # sha256 of the zip, hex: names the files on disk
    sha256_b64: str  # Lambda's CodeSha256
    size: int
    code_dir: Path
    zip_path: Path

    def read(self, name: str) -> str | None:
        p = self.code_dir / name
        return p.read_text() if p.is_file() else None


class BundleStore:
    """`bundles/<sha>.zip` and `code/<sha>/`; identical uploads share both."""

    def __init__(self, data_dir: Path, shared: SharedCode | None = None) -> None:
        self.zips = data_dir / "bundles"
        self.code = data_dir / "code"
        self.tmp = data_dir / "tmp"
        self.shared = shared or SharedCode()
        self._fetching: dict[str, asyncio.Future[bool]] = {}  # on the event loop only

    @staticmethod
    def digest(data: bytes) -> str:
        """The name a zip is stored under (sha256, hex)."""
        return hashlib.sha256(data).hexdigest()

    def put(self, data: bytes) -> Bundle:
        """Validate, store and unpack a zip (blocking; call off the event loop)."""
        digest = hashlib.sha256(data)
        hexd = digest.hexdigest()
        b64 = base64.b64encode(digest.digest()).decode()
        zip_path = self.zips / f"{hexd}.zip"
        code_dir = self.code / hexd
        if not code_dir.is_dir():
            with unzip.open_zip(data) as zf:
                self._unpack(zf, len(data), code_dir)
        if not zip_path.exists():
            _atomic_write(zip_path, data, self.tmp)
        return Bundle(hexd, b64, len(data), code_dir, zip_path)

    async def store(self, data: bytes) -> Bundle:
        """`put`, then make the zip available to every node (before a deploy returns)."""
        bundle = await asyncio.to_thread(self.put, data)
        await self.shared.put(f"code/{bundle.hexdigest}", bundle.zip_path)
        return bundle

    async def share(self, hexdigest: str) -> None:
        """Make a bundle on this node's disk available to every node, unless it is."""
        zip_path = self.zips / f"{hexdigest}.zip"
        if zip_path.is_file():
            await self.shared.put(f"code/{hexdigest}", zip_path)

    async def ensure(self, hexdigest: str) -> bool:
        """Whether the bundle is unpacked on this node's disk, fetching it from the shared
        store the first time (concurrent callers share one fetch)."""
        if (self.code / hexdigest).is_dir():
            return True
        running = self._fetching.get(hexdigest)
        if running is None:
            running = self._fetching[hexdigest] = asyncio.ensure_future(self._fetch(hexdigest))
            running.add_done_callback(lambda _: self._fetching.pop(hexdigest, None))
        return await asyncio.shield(running)

    async def _fetch(self, hexdigest: str) -> bool:
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="bundle-")
        try:
            try:
                if not await self.shared.get(f"code/{hexdigest}", fd):
                    return False
            finally:
                os.close(fd)
            data = await asyncio.to_thread(Path(tmp).read_bytes)
            if self.digest(data) != hexdigest:  # a bundle's name is its hash: check it too
                raise ValueError(f"the shared copy of bundle {hexdigest[:12]} does not match "
                                 "its hash")
            await asyncio.to_thread(self.put, data)  # the checks and unpacking of a deploy
            return True
        finally:
            os.unlink(tmp)

    def get(self, hexdigest: str) -> Bundle | None:
        zip_path = self.zips / f"{hexdigest}.zip"
        if not zip_path.is_file():
            return None
        data = zip_path.read_bytes()
        b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
        return Bundle(hexdigest, b64, len(data), self.code / hexdigest, zip_path)

    def _unpack(self, zf: zipfile.ZipFile, size: int, dest: Path) -> None:
        entries = unzip.plan(zf, size)  # refuses before anything is written
        staging = Path(tempfile.mkdtemp(dir=self.tmp, prefix="unzip-"))
        try:
            unzip.extract(zf, entries, staging)
            _compile(staging)
            # the top folder is sealed after the move: moving a folder to another parent
            # rewrites its ".." entry, which needs write permission on it (unless root)
            _make_read_only(staging, top=False)
            try:
                os.rename(staging, dest)
            except OSError:
                if not dest.is_dir():  # a concurrent identical upload won the race otherwise
                    raise
            else:
                os.chmod(dest, 0o555)
        finally:
            if staging.exists():
                remove_tree(staging)

    # -- collection: control/collector.py decides what goes, these only act ------------------

    def stored(self) -> set[str]:
        """Digests with a zip or a code folder on disk."""
        names = {p.stem for p in self.zips.glob("*.zip")}
        names.update(p.name for p in self.code.iterdir() if not p.name.startswith("."))
        return names

    def discard(self, hexdigest: str) -> None:
        """Take a bundle out of use at once: unlink the zip, rename the code folder aside
        (removed later, off the event loop, by `remove_trash`)."""
        (self.zips / f"{hexdigest}.zip").unlink(missing_ok=True)
        trash = self.code / f".trash-{hexdigest}-{os.urandom(4).hex()}"
        # same parent: no ".." to rewrite, so the sealed folder needs no chmod first
        with contextlib.suppress(FileNotFoundError):  # a concurrent collection got there first
            os.rename(self.code / hexdigest, trash)

    def remove_trash(self) -> None:
        """Remove the folders `discard` set aside (also those a crash left)."""
        for p in self.code.glob(".trash-*"):
            remove_tree(p)

    def clean_tmp(self) -> None:
        """Leftovers of unpacks and writes a crash interrupted (at start, before any deploy)."""
        for p in self.tmp.glob("unzip-*"):
            remove_tree(p)
        for p in self.tmp.glob("bundle-*"):
            p.unlink(missing_ok=True)


def _compile(root: Path) -> None:
    """Compile the modules once here, so instances (whose code dir is read-only) never do.

    Compiling is costly for hostile code (a 2 MiB module of one-line statements: 6 s and
    540 MiB; 20 MiB: 71 s and 5 GiB), so it runs in a child held to COMPILE_CPU_S seconds of
    CPU and COMPILE_MEMORY bytes, and skips modules over MAX_COMPILE bytes. Whatever is left
    uncompiled (or does not compile) is compiled, or reported, by the import inside the
    instance, under that instance's own limits."""
    script = ("import compileall, os, resource, sys\n"
              f"resource.setrlimit(resource.RLIMIT_CPU, ({COMPILE_CPU_S}, {COMPILE_CPU_S}))\n"
              f"resource.setrlimit(resource.RLIMIT_AS, ({COMPILE_MEMORY}, {COMPILE_MEMORY}))\n"
              "class Big:  # compile_file skips a module when rx.search(path) is true\n"
              f"    search = staticmethod(lambda p: os.stat(p).st_size > {MAX_COMPILE})\n"
              "compileall.compile_dir(sys.argv[1], quiet=2, workers=1, rx=Big())\n")
    # on a timeout run() kills it; the modules it did not reach are compiled on import
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-I", "-c", script, str(root)], env={},
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=COMPILE_CPU_S * 4, check=False)


def remove_tree(root: Path) -> None:
    """Remove a folder tree, sealed (read-only) or not."""
    if root.is_dir() and not root.is_symlink():
        _make_writable(root)
        shutil.rmtree(root, ignore_errors=True)
    else:
        root.unlink(missing_ok=True)


def _make_read_only(root: Path, top: bool = True) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for f in filenames:
            path = os.path.join(dirpath, f)
            os.chmod(path, 0o555 if os.stat(path).st_mode & 0o100 else 0o444)
        if top or dirpath != str(root):
            os.chmod(dirpath, 0o555)


def _make_writable(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


def _atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="bundle-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
