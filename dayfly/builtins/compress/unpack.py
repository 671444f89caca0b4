"""Extraction into a prefix: gzip/zstd streams, zip (its directory is checked before anything is
written) and tar(.gz/.zst) (streamed; on a refusal the objects already written are deleted)."""

from __future__ import annotations

import stat
import tarfile
import zipfile
from typing import IO, Any, BinaryIO

import stream_codecs
from _lib import streams
from guards import ArchiveRefused, Budget, safe_name

CHUNK = 1024 * 1024
TAR_CODECS = {"tar": None, "tar.gz": "gzip", "tar.zst": "zstd"}


class Extraction:
    """One archive object extracted under one prefix, within a budget; what it wrote is
    remembered so that a refusal can take it back."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, target_bucket: str,
                 prefix: str, budget: Budget, part_size: int) -> None:
        self.client, self.bucket, self.key, self.size = client, bucket, key, size
        self.target_bucket, self.prefix = target_bucket, prefix
        self.budget, self.part_size = budget, part_size
        self.written: list[dict[str, Any]] = []

    def member(self, name: str, src: IO[bytes], key: str | None = None) -> None:
        """Stream one member's bytes (read in bounded chunks) into its object."""
        key = key or self.prefix + name
        with streams.writer(self.client, self.target_bucket, key,
                            part_size=self.part_size) as w:
            while chunk := src.read(CHUNK):
                self.budget.add(len(chunk), name)
                w.write(chunk)
        self.written.append({"bucket": self.target_bucket, "key": key, "size": w.size})

    def rollback(self) -> None:
        """Delete what this extraction wrote (best effort: the refusal is what matters)."""
        for obj in self.written:
            try:
                self.client.delete(obj["bucket"], obj["key"])
            except Exception as exc:
                print(f"rollback: could not delete {obj['key']}: {exc}")
        self.written = []


def _zip_members(zf: zipfile.ZipFile, budget: Budget) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every entry checked (names, types, declared sizes) before anything is extracted."""
    out = []
    for info in zf.infolist():
        budget.entry(info.filename)
        name = safe_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveRefused(f"entry {info.filename!r}: symbolic links are refused")
        if info.flag_bits & 0x1:
            raise ArchiveRefused(f"entry {info.filename!r}: encrypted entries are refused")
        if info.is_dir():
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise ArchiveRefused(f"entry {info.filename!r}: only regular files are extracted")
        budget.declare(info.file_size, info.filename)
        out.append((info, name))
    return out


def _zip(ex: Extraction) -> None:
    src = streams.seekable(ex.client, ex.bucket, ex.key, ex.size)
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        src.close()
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from None
    with src, zf:
        for info, name in _zip_members(zf, ex.budget):
            with zf.open(info) as src:
                ex.member(name, src)


def _tar(ex: Extraction, raw: BinaryIO, codec: str | None) -> None:
    stream = stream_codecs.decompressing_reader(raw, codec) if codec else raw
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tf:
            for ti in tf:
                ex.budget.entry(ti.name)
                name = safe_name(ti.name)
                if ti.issym() or ti.islnk():
                    raise ArchiveRefused(f"entry {ti.name!r}: symbolic and hard links are "
                                         "refused")
                if ti.isdir():
                    continue
                if not ti.isreg():
                    raise ArchiveRefused(f"entry {ti.name!r}: devices, FIFOs and other special "
                                         "files are refused")
                ex.budget.declare(ti.size, ti.name)
                src = tf.extractfile(ti)
                assert src is not None
                ex.member(name, src)
    except tarfile.TarError as exc:
        raise ArchiveRefused(f"not a readable tar archive: {exc}") from None


def extract(ex: Extraction, fmt: str, out_key: str) -> None:
    """Extract the archive (a gzip/zstd stream becomes the one object `out_key`); refusals and
    corrupt data take back what was written."""
    try:
        if fmt == "zip":
            _zip(ex)
            return
        reader = streams.read_ahead(ex.client.get(ex.bucket, ex.key), CHUNK)
        try:
            if fmt in ("gzip", "zstd"):
                ex.budget.entry(out_key)
                ex.member(out_key, stream_codecs.decompressing_reader(reader, fmt), key=out_key)
            else:
                _tar(ex, reader, TAR_CODECS[fmt])
        finally:
            reader.close()
    except ArchiveRefused:
        ex.rollback()
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, *stream_codecs.CORRUPT) as exc:
        ex.rollback()
        raise ArchiveRefused(f"corrupt {fmt} data: {type(exc).__name__}: {exc}") from None
    except BaseException:
        ex.rollback()
        raise
