"""Code bundles: zips stored by content hash and unpacked once, read-only, with zip-slip checks."""

from __future__ import annotations

import base64
import compileall
import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..config import MAX_UNZIPPED
from ..errors import InvalidParameter

MAX_ENTRIES = 20_000


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

    def __init__(self, data_dir: Path) -> None:
        self.zips = data_dir / "bundles"
        self.code = data_dir / "code"
        self.tmp = data_dir / "tmp"

    def put(self, data: bytes) -> Bundle:
        """Validate, store and unpack a zip (blocking; call off the event loop)."""
        digest = hashlib.sha256(data)
        hexd = digest.hexdigest()
        b64 = base64.b64encode(digest.digest()).decode()
        zip_path = self.zips / f"{hexd}.zip"
        code_dir = self.code / hexd
        if not code_dir.is_dir():
            try:
                zf = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                raise InvalidParameter("Could not unzip uploaded file. Please check your file, "
                                       "then try to upload again.") from None
            with zf:
                self._unpack(zf, code_dir)
        if not zip_path.exists():
            _atomic_write(zip_path, data, self.tmp)
        return Bundle(hexd, b64, len(data), code_dir, zip_path)

    def get(self, hexdigest: str) -> Bundle | None:
        zip_path = self.zips / f"{hexdigest}.zip"
        if not zip_path.is_file():
            return None
        data = zip_path.read_bytes()
        b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
        return Bundle(hexdigest, b64, len(data), self.code / hexdigest, zip_path)

    def _unpack(self, zf: zipfile.ZipFile, dest: Path) -> None:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise InvalidParameter(f"The zip has {len(infos)} entries; the limit is {MAX_ENTRIES}")
        total = 0
        for info in infos:
            _check_member(info)
            total += info.file_size
            if total > MAX_UNZIPPED:
                raise InvalidParameter(f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes")
        staging = Path(tempfile.mkdtemp(dir=self.tmp, prefix="unzip-"))
        try:
            for info in infos:
                target = staging / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            # compiled once here, so instances (whose code dir is read-only) never compile;
            # a file that does not compile is left for the import to report properly
            compileall.compile_dir(str(staging), quiet=2, workers=1)
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
                _make_writable(staging)
                shutil.rmtree(staging, ignore_errors=True)

    def remove_unused(self, keep: set[str]) -> None:
        for zp in self.zips.glob("*.zip"):
            if zp.stem not in keep:
                zp.unlink(missing_ok=True)
                d = self.code / zp.stem
                if d.is_dir():
                    _make_writable(d)
                    shutil.rmtree(d, ignore_errors=True)


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or ":" in name:
        raise InvalidParameter(f"The zip entry {name!r} points outside the bundle")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InvalidParameter(f"The zip entry {name!r} is a symbolic link; links are not allowed")


def _make_read_only(root: Path, top: bool = True) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o444)
        if top or dirpath != str(root):
            os.chmod(dirpath, 0o555)


def _make_writable(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


def _atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
