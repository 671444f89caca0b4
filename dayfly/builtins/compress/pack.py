"""Compression: one object to gzip or zstd, or objects into a zip or tar(.gz/.zst) archive,
streamed from GET to multipart upload without holding an object in memory."""

from __future__ import annotations

import tarfile
import time
import zipfile
from collections.abc import Iterable
from typing import Any, BinaryIO

import stream_codecs
from _lib.streams import ObjectWriter, read_ahead

CHUNK = 1024 * 1024


def _pump(client: Any, bucket: str, key: str, out: Any) -> int:
    """Copy one object into `out` chunk by chunk; bytes copied."""
    n = 0
    reader = read_ahead(client.get(bucket, key), CHUNK)
    try:
        while chunk := reader.read_chunk():
            out.write(chunk)
            n += len(chunk)
    finally:
        reader.close()
    return n


def compress_one(client: Any, bucket: str, key: str, codec: str, level: int,
                 writer: ObjectWriter) -> int:
    """gzip or zstd of one object into `writer`; bytes read."""
    c = stream_codecs.compressor(codec, level)
    n = 0
    reader = read_ahead(client.get(bucket, key), CHUNK)
    try:
        while chunk := reader.read_chunk():
            n += len(chunk)
            out = c.compress(chunk)
            if out:
                writer.write(out)
    finally:
        reader.close()
    writer.write(c.flush())
    return n


def _zip(client: Any, bucket: str, members: Iterable[tuple[str, str, int]], level: int,
         sink: BinaryIO) -> int:
    total = 0
    stamp = time.gmtime()[:6]
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, allowZip64=True,
                         compresslevel=level) as zf:
        for key, name, size in members:
            info = zipfile.ZipInfo(name, stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=size >= 1 << 31) as dst:
                total += _pump(client, bucket, key, dst)
    return total


def _tar(client: Any, bucket: str, members: Iterable[tuple[str, str, int]], codec: str | None,
         level: int, sink: BinaryIO) -> int:
    out: Any = stream_codecs.CompressingWriter(sink, codec, level) if codec else sink
    total = 0
    now = time.time()
    # typeshed's overloads of tarfile.open omit copybufsize, which it passes on to TarFile
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                      bufsize=CHUNK, copybufsize=CHUNK) as tf:
        for key, name, size in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = size, now, 0o644
            reader = read_ahead(client.get(bucket, key), CHUNK)
            try:
                tf.addfile(info, reader)
            finally:
                reader.close()
            total += size
    if codec:
        out.close()
    return total


def archive(client: Any, bucket: str, members: Iterable[tuple[str, str, int]], fmt: str,
            level: int, writer: ObjectWriter) -> int:
    """(object key, name in the archive, size) for each member, into one archive; bytes read."""
    if fmt == "zip":
        return _zip(client, bucket, members, level, writer)
    codec = {"tar": None, "tar.gz": "gzip", "tar.zst": "zstd"}[fmt]
    return _tar(client, bucket, members, codec, level, writer)
