"""A request body as S3 reads it: decoded (plain or aws-chunked) and checked against every digest
the client declared: x-amz-content-sha256, Content-MD5, x-amz-checksum-* (header or trailer)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator

from starlette.requests import Request

from ...numbers import uint
from ...stores import checksums
from ...stores.blobs import Blob, Buffer
from ...stores.objects import MAX_PUT
from ...stores.s3errors import S3Error
from .chunked import ChunkedBody
from .sigv4 import UNSIGNED, Auth

STREAMING = {
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": (True, False),  # (signed chunks, trailer)
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": (True, True),
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER": (False, True),
}
_DIGEST_LEN = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32, "sha512": 64,
               "md5": 16}


def _int_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    number = uint(value)
    if number is None:
        raise S3Error("InvalidArgument", f"{name} must be a non-negative integer")
    return number


def checksum_algorithm(name: str) -> str:
    """An algorithm name as a client sends it (CRC32, crc32c, ...), lower case, or raise."""
    alg = name.strip().lower()
    if alg not in checksums.ALGORITHMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {name[:40]!r} is not supported")
    return alg


class Payload:
    """One request body; iterate `chunks()`, then `verify(blob)` before committing anything."""

    def __init__(self, request: Request, auth: Auth, limit: int = MAX_PUT,
                 body_checksums: bool = True) -> None:
        self.request = request
        self.auth = auth
        mode = auth.payload
        self.chunked: ChunkedBody | None = None
        if mode.startswith("STREAMING-"):
            if mode not in STREAMING:
                raise S3Error("NotImplemented", f"x-amz-content-sha256 {mode[:60]} is not "
                              "implemented")
            signed, has_trailer = STREAMING[mode]
            self.chunked = ChunkedBody(request.stream(), auth if signed else None, has_trailer)
            size = _int_header(request, "x-amz-decoded-content-length")
        elif mode != UNSIGNED and (len(mode) != 64 or not _is_hex(mode)):
            raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a "
                          "STREAMING-* value or a SHA-256 hex digest")
        else:
            size = _int_header(request, "content-length")
        if size is not None and size > limit:
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed "
                          "size", ProposedSize=str(size), MaxSizeAllowed=str(limit))
        self.size = size
        self.md5 = self._content_md5()
        self.declared = self._declared_checksums()
        self.object_checksums: dict[str, str] = {}
        if not body_checksums:
            self.object_checksums, self.declared = self.declared, {}
        trailer = request.headers.get("x-amz-trailer", "").strip().lower()
        if trailer:
            if not trailer.startswith("x-amz-checksum-") or self.chunked is None:
                raise S3Error("InvalidRequest", f"Unsupported x-amz-trailer {trailer[:60]!r}")
            self.declared.setdefault(checksum_algorithm(trailer[15:]), "")
        if len(self.declared) > 1:
            raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple "
                          "checksum Types are not allowed.")
        self.sha256 = mode.lower() if len(mode) == 64 else None  # a signed payload hash
        self.algorithms = set(self.declared) | ({"sha256"} if self.sha256 else set())

    def _content_md5(self) -> bytes | None:
        value = self.request.headers.get("content-md5")
        if value is None:
            return None
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:  # binascii.Error, or not ASCII
            raw = b""
        if len(raw) != 16:
            raise S3Error("InvalidDigest", "The Content-MD5 you specified was invalid.")
        return raw

    def _declared_checksums(self) -> dict[str, str]:
        out = {}
        for name, value in self.request.headers.items():
            if name.startswith("x-amz-checksum-") and name not in ("x-amz-checksum-algorithm",
                                                                   "x-amz-checksum-type",
                                                                   "x-amz-checksum-mode"):
                out[checksum_algorithm(name[15:])] = value.strip()
        return out

    def chunks(self) -> AsyncIterator[Buffer]:
        return self.chunked.__aiter__() if self.chunked is not None else self.request.stream()

    def verify(self, blob: Blob) -> dict[str, str]:
        """Raise unless the body matches every declared digest; the checksums to keep."""
        if self.size is not None and self.chunked is not None and blob.size != self.size:
            raise S3Error("IncompleteBody", "You did not provide the number of bytes specified "
                          "by the x-amz-decoded-content-length HTTP header")
        if self.sha256 and not hmac.compare_digest(blob.digests["sha256"].hex(), self.sha256):
            raise S3Error("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' "
                          "header does not match what was computed.",
                          ClientComputedContentSHA256=self.sha256,
                          S3ComputedContentSHA256=blob.digests["sha256"].hex())
        if self.md5 is not None and self.md5 != blob.md5:
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we "
                          "received.")
        kept = {}
        for alg, given in self.declared.items():
            if not given and self.chunked is not None:
                given = self.chunked.trailers.get(f"x-amz-checksum-{alg}", "")
            try:
                raw = base64.b64decode(given, validate=True)
            except ValueError:  # binascii.Error, or not ASCII
                raw = b""
            if len(raw) != _DIGEST_LEN[alg]:
                raise S3Error("InvalidRequest", f"Value for x-amz-checksum-{alg} header is "
                              "invalid.")
            if raw != blob.digests[alg]:
                raise S3Error("BadDigest", f"The {alg.upper()} you specified did not match the "
                              "calculated checksum.")
            kept[alg] = given
        return kept

    async def read(self, limit: int) -> bytes:
        """The whole (small) body, verified (for XML request bodies)."""
        data = bytearray()
        async for chunk in self.chunks():
            data += chunk
            if len(data) > limit:
                raise S3Error("MalformedXML", f"The XML body is larger than {limit} bytes")
        digests = {}
        for alg in self.algorithms:
            d = checksums.new(alg)
            d.update(bytes(data))
            digests[alg] = d.digest()
        self.verify(Blob("", len(data), hashlib.md5(data).digest(), digests))
        return bytes(data)


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in s)
