"""Unpacking an uploaded zip: every entry checked before a byte is written, every byte counted.

Nothing the archive declares is trusted: names are checked against each other (duplicates,
a file that is also a folder), sizes are counted as they are written (a central directory
may lie), CRCs are checked as each entry is read to its end, and the whole is capped at
Lambda's unzipped limit on the bytes actually written. Every refusal is an InvalidParameter
that names the entry, never a path on this machine.
"""

from __future__ import annotations

import errno
import io
import itertools
import lzma
import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..config import MAX_UNZIPPED
from ..errors import InvalidParameter, ServiceError

MAX_ENTRIES = 20_000
MAX_COMPONENT = 255  # bytes in one name component (NAME_MAX)
MAX_NAME = 1024  # bytes in one entry name
CHUNK = 1 << 20
BAD_ZIP = "Could not unzip uploaded file. Please check your file, then try to upload again."
TOO_BIG = f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes"
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
# what a damaged stream raises while it is read: zipfile's own CRC check, each codec's error
# (bz2 says OSError "Invalid data stream"), an unknown method, an encrypted entry
READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError,
                NotImplementedError, RuntimeError)


def open_zip(data: bytes) -> zipfile.ZipFile:
    """The archive, or Lambda's refusal if its directory cannot be read."""
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError,
            NotImplementedError):
        raise InvalidParameter(BAD_ZIP) from None


def plan(zf: zipfile.ZipFile, size: int) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Check every entry against the others; return (entry, relative path) in archive order."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise InvalidParameter(f"The zip has {len(infos)} entries; the limit is {MAX_ENTRIES}")
    out: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    seen: dict[PurePosixPath, str] = {}
    files: dict[PurePosixPath, str] = {}
    dirs: dict[PurePosixPath, str] = {}
    declared = 0
    for info in infos:
        if info.filename == "./" and info.file_size == 0:
            continue  # the archive's own top folder, as some tools write it: nothing to make
        path = _check_entry(info)
        if path in seen:
            first = seen[path]
            if first.endswith("/") != info.filename.endswith("/"):
                raise InvalidParameter(f"{BAD_ZIP} The zip holds {path.as_posix()!r} both as a "
                                       f"file and as a folder ({first!r} and {info.filename!r})")
            raise InvalidParameter(f"{BAD_ZIP} The entry {info.filename!r} appears more than "
                                   "once" + (f" (also as {first!r})" if first != info.filename
                                             else ""))
        seen[path] = info.filename
        (dirs if info.is_dir() else files)[path] = info.filename
        for parent in path.parents:
            if parent != PurePosixPath("."):
                dirs.setdefault(parent, info.filename)
        declared += info.file_size
        if declared >= MAX_UNZIPPED:
            raise InvalidParameter(TOO_BIG)
        out.append((info, path))
    for path, name in files.items():
        if path in dirs:
            raise InvalidParameter(f"{BAD_ZIP} The zip holds {path.as_posix()!r} both as a "
                                   f"file and as a folder ({name!r} and {dirs[path]!r})")
    _check_layout(infos, size)
    return out


def extract(zf: zipfile.ZipFile, entries: list[tuple[zipfile.ZipInfo, PurePosixPath]],
            dest: Path) -> int:
    """Write the planned entries under `dest` (which exists and is empty); return bytes written."""
    total = 0
    for info, path in entries:
        target = dest.joinpath(*path.parts)
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL|O_NOFOLLOW: the plan already refused duplicates and links; belt and braces
            # an executable entry stays one (a custom runtime's `bootstrap`); nothing else is kept
            mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        except OSError as exc:
            raise _write_error(info, exc) from None
        with os.fdopen(fd, "wb") as out:
            total += _copy(zf, info, out, MAX_UNZIPPED - total)
    return total


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out, room: int) -> int:
    """Copy one entry, counting; stop at its declared size or the room left, whichever first."""
    written = 0
    try:
        src = zf.open(info)
    except READ_ERRORS as exc:
        raise _read_error(info, exc) from None
    with src:
        while True:
            try:
                chunk = src.read(CHUNK)  # the CRC is checked when the last chunk is read
            except READ_ERRORS as exc:
                raise _read_error(info, exc) from None
            if not chunk:
                break
            written += len(chunk)
            if written >= room:
                raise InvalidParameter(TOO_BIG)
            try:
                out.write(chunk)
            except OSError as exc:
                raise _write_error(info, exc) from None
    if written != info.file_size:
        raise InvalidParameter(f"{BAD_ZIP} The entry {info.filename!r} declares "
                               f"{info.file_size} bytes but holds {written}")
    return written


def check_unzipped(*roots: Path) -> None:
    """A function's code and its dependencies together stay under Lambda's unzipped limit."""
    total = 0
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            total += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
    if total >= MAX_UNZIPPED:
        raise InvalidParameter(f"{TOO_BIG} (the code and the dependencies requirements.txt "
                               f"installed: {total} bytes)")


def _check_entry(info: zipfile.ZipInfo) -> PurePosixPath:
    """One entry on its own: its name, its type, how it is stored."""
    name = info.filename
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or ":" in name:
        raise InvalidParameter(f"The zip entry {name!r} points outside the bundle")
    if "\\" in name:
        raise InvalidParameter(f"The zip entry {name!r} uses '\\' as a folder separator; "
                               "rebuild the zip with '/' (zip -r, or Python's zipfile)")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidParameter(f"The zip entry {name!r} has a control character in its name")
    encoded = [p.encode(errors="surrogateescape") for p in path.parts]
    if not path.parts or path == PurePosixPath("."):
        raise InvalidParameter(f"The zip entry {name!r} has no name")
    if len(name.encode(errors="surrogateescape")) > MAX_NAME or any(
            len(p) > MAX_COMPONENT for p in encoded):
        raise InvalidParameter(f"The zip entry {name[:64]!r}... has a name longer than this "
                               f"machine's limit ({MAX_COMPONENT} bytes a part, {MAX_NAME} in all)")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InvalidParameter(f"The zip entry {name!r} is a symbolic link; links are not allowed")
    if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise InvalidParameter(f"The zip entry {name!r} is not a file or a folder "
                               "(devices, pipes and sockets are not allowed)")
    if info.flag_bits & 0x1:
        raise InvalidParameter(f"{BAD_ZIP} The entry {name!r} is encrypted; upload it "
                               "unencrypted")
    if info.compress_type not in _METHODS:
        raise InvalidParameter(f"{BAD_ZIP} The entry {name!r} uses compression method "
                               f"{info.compress_type}; use deflate (or store, bzip2, lzma)")
    return path


def _check_layout(infos: list[zipfile.ZipInfo], size: int) -> None:
    """Entries must not share bytes: overlapping entries are how small zips unpack to gigabytes."""
    spans = sorted((i.header_offset, i.header_offset + 30 + len(i.orig_filename.encode(
        errors="surrogateescape")) + i.compress_size, i.filename) for i in infos)
    # the local header's extra field is not counted: `end` is a lower bound, which is enough
    # to catch entries that reuse one compressed stream
    for (_start, end, name), (nxt, _end, other) in itertools.pairwise(spans):
        if end > nxt:
            raise InvalidParameter(f"{BAD_ZIP} The entries {name!r} and {other!r} overlap")
    if spans and spans[-1][1] > size:
        raise InvalidParameter(f"{BAD_ZIP} The entry {spans[-1][2]!r} runs past the end of the zip")


def _read_error(info: zipfile.ZipInfo, exc: BaseException) -> InvalidParameter:
    """A damaged entry: say which and how, in words that hold no path."""
    if isinstance(exc, zipfile.BadZipFile) and "CRC" in str(exc):
        why = "fails its CRC-32 check (the zip is damaged)"
    elif isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        why = "is encrypted; upload it unencrypted"
    elif isinstance(exc, NotImplementedError):
        why = "uses a compression method dayfly cannot read"
    elif isinstance(exc, EOFError):
        why = "ends before its compressed data does (the zip is truncated or damaged)"
    else:
        why = "cannot be decompressed (the zip is damaged)"
    return InvalidParameter(f"{BAD_ZIP} The entry {info.filename!r} {why}")


def _write_error(info: zipfile.ZipInfo, exc: OSError) -> Exception:
    """Writing failed: the node's fault (no space) or the entry's (a name the disk refuses)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        return ServiceError(f"dayfly could not store the code ({os.strerror(exc.errno)}); "
                            "the node's disk needs attention")
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return InvalidParameter(f"{BAD_ZIP} The entry {info.filename!r} could not be unpacked: "
                            f"{reason}")
