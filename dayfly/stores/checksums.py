"""The checksums S3 accepts (CRC32, CRC32C, CRC64NVME, SHA-1/256/512, MD5), incremental."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from typing import Protocol

try:  # awscrt (botocore[crt]) computes CRC32C/CRC64NVME in C; the tables below are the fallback
    from awscrt import checksums as _crt
except ImportError:  # pragma: no cover - depends on the environment
    _crt = None


class Digest(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


def _reflected_table(poly: int) -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _TableCrc:
    """A reflected CRC with init and final xor of all ones (CRC32C and CRC64NVME are both)."""

    bits = 32
    table: list[int] = []
    crt: Callable[[bytes | bytearray | memoryview, int], int] | None = None

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self.crt is not None:
            self.value = self.crt(data, self.value)
            return
        mask = (1 << self.bits) - 1
        c, table = self.value ^ mask, self.table
        for b in data:
            c = table[(c ^ b) & 0xFF] ^ (c >> 8)
        self.value = c ^ mask

    def digest(self) -> bytes:
        return self.value.to_bytes(self.bits // 8, "big")


class _Crc32c(_TableCrc):
    table = _reflected_table(0x82F63B78)
    crt = staticmethod(_crt.crc32c) if _crt is not None else None


class _Crc64Nvme(_TableCrc):
    bits = 64
    table = _reflected_table(0x9A6C9329AC4BC9B5)
    crt = staticmethod(_crt.crc64nvme) if _crt is not None and hasattr(_crt, "crc64nvme") \
        else None


ALGORITHMS: dict[str, Callable[[], Digest]] = {
    "crc32": _Crc32, "crc32c": _Crc32c, "crc64nvme": _Crc64Nvme, "sha1": hashlib.sha1,
    "sha256": hashlib.sha256, "sha512": hashlib.sha512, "md5": hashlib.md5,
}
FULL_OBJECT_OK = ("crc32", "crc32c", "crc64nvme")  # CRCs combine; S3 allows FULL_OBJECT only there


def new(algorithm: str) -> Digest:
    return ALGORITHMS[algorithm]()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def composite(algorithm: str, part_digests: list[bytes]) -> str:
    """S3's COMPOSITE checksum of a multipart object: the checksum of the part checksums, '-N'."""
    d = new(algorithm)
    d.update(b"".join(part_digests))
    return f"{b64(d.digest())}-{len(part_digests)}"
