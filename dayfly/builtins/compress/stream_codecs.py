"""Streaming gzip and zstd: compressors fed chunk by chunk, a compressing file-like writer, and
decompressing readers whose every read is bounded (so a bomb cannot fill memory)."""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Any, BinaryIO

import zstandard

SUFFIX = {"gzip": "gz", "zstd": "zst", "zip": "zip", "tar": "tar", "tar.gz": "tar.gz",
          "tar.zst": "tar.zst"}
CONTENT_TYPE = {"gzip": "application/gzip", "zstd": "application/zstd", "zip": "application/zip",
                "tar": "application/x-tar", "tar.gz": "application/gzip",
                "tar.zst": "application/zstd"}


# what corrupt compressed data raises, besides OSError and EOFError
CORRUPT = (zlib.error, zstandard.ZstdError)


def compressor(codec: str, level: int) -> Any:
    """An object with compress(chunk) and flush(): gzip (RFC 1952) or a zstd frame."""
    if codec == "gzip":
        return zlib.compressobj(level, zlib.DEFLATED, 31)  # 16 + 15: a gzip header and trailer
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=level).compressobj()
    raise ValueError(f"no stream codec {codec!r}")


class CompressingWriter(io.RawIOBase):
    """Compresses what is written into another writer (which it does not close)."""

    def __init__(self, sink: BinaryIO, codec: str, level: int) -> None:
        super().__init__()
        self.sink = sink
        self._c = compressor(codec, level)
        self._flushed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        out = self._c.compress(bytes(data) if isinstance(data, memoryview) else data)
        if out:
            self.sink.write(out)
        return len(data)

    def close(self) -> None:
        if not self._flushed and not self.closed:
            self._flushed = True
            self.sink.write(self._c.flush())
        super().close()

    def __del__(self) -> None:
        pass  # never flush from the garbage collector: after an error the sink is abandoned


def decompressing_reader(raw: BinaryIO, codec: str) -> BinaryIO:
    """A reader of the decompressed stream; each read(n) returns at most n bytes."""
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if codec == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    raise ValueError(f"no stream codec {codec!r}")


def detect(key: str) -> str | None:
    """The format an archive's name says it has (`.tar.gz`, `.tgz`, `.zip`, `.gz`, ...)."""
    name = key.lower()
    for suffix, fmt in ((".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar.zst", "tar.zst"),
                        (".tzst", "tar.zst"), (".tar", "tar"), (".zip", "zip"), (".gz", "gzip"),
                        (".zst", "zstd")):
        if name.endswith(suffix):
            return fmt
    return None
