"""multipart/form-data as S3's POST Object reads it, streamed (RFC 7578; standard library only).

The fields before the `file` part are read into memory (at most `MAX_FIELDS` bytes); the file
is handed on chunk by chunk as it arrives, never held whole; parts after the file are read and
ignored, as S3 ignores them. Anything not well formed is a MalformedPOSTRequest.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from ...stores.s3errors import S3Error

MAX_FIELDS = 64 * 1024  # bytes of fields (names, values, part headers) before the file
MAX_PART_HEAD = 8 * 1024
MAX_AFTER_FILE = 64 * 1024  # bytes after the file (ignored parts, the epilogue)
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


def malformed(why: str) -> S3Error:
    return S3Error("MalformedPOSTRequest", "The body of your POST request is not well-formed "
                   f"multipart/form-data ({why}).")


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data; boundary=...` content type."""
    essence, _, params = content_type.partition(";")
    if essence.strip().lower() != "multipart/form-data":
        raise malformed("the content type is not multipart/form-data")
    found = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
             for m in _PARAM.finditer(";" + params)}
    boundary = found.get("boundary") or ""
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise malformed("no valid boundary")
    return boundary.encode()


class Form:
    """One form body: `await fields()` (up to the file), then iterate `file()`."""

    def __init__(self, stream: AsyncIterator[bytes], boundary: bytes) -> None:
        self.stream = stream
        self.delimiter = b"\r\n--" + boundary
        self.buf = bytearray(b"\r\n")  # so the first delimiter looks like every other one
        self.eof = False
        self.filename: str | None = None
        self.file_type: str | None = None

    async def _fill(self) -> None:
        if self.eof:
            raise malformed("the body ends before the closing boundary")
        try:
            self.buf += await self.stream.__anext__()
        except StopAsyncIteration:
            self.eof = True

    async def _until(self, marker: bytes, limit: int) -> bytes:
        """Bytes up to `marker` (consumed, not returned), at most `limit` of them."""
        while True:
            at = self.buf.find(marker)
            if at >= 0:
                out = bytes(self.buf[:at])
                del self.buf[:at + len(marker)]
                return out
            if len(self.buf) > limit + len(marker):
                raise malformed("a part or its headers is too long")
            await self._fill()

    async def _after_delimiter(self) -> bool:
        """After a delimiter: True if a part follows, False at the closing one (`--`)."""
        while len(self.buf) < 2:
            await self._fill()
        if self.buf[:2] == b"--":
            return False
        line = await self._until(b"\r\n", 256)  # transport padding, then CRLF
        if line.strip(b" \t"):
            raise malformed("junk after a boundary")
        return True

    async def fields(self) -> dict[str, str]:
        """The fields before the file part (names lower case); sets filename and file_type."""
        await self._until(self.delimiter, MAX_FIELDS)  # the preamble, if any
        out: dict[str, str] = {}
        used = 0
        while await self._after_delimiter():
            head = await self._until(b"\r\n\r\n", MAX_PART_HEAD)
            name, filename, ctype = _part_head(head)
            if name.lower() == "file":
                self.filename, self.file_type = filename or "", ctype
                return out
            value = await self._until(self.delimiter, MAX_FIELDS - used)
            used += len(head) + len(value)
            if used > MAX_FIELDS:
                raise S3Error("InvalidArgument", "Your POST request fields preceding the upload "
                              "file were too large.")
            if name.lower() in out:
                raise S3Error("InvalidArgument", f"The form field {name[:60]!r} is given more "
                              "than once")
            try:
                out[name.lower()] = value.decode()
            except UnicodeDecodeError:
                raise malformed(f"the field {name[:60]!r} is not UTF-8") from None
        return out  # no file part

    async def file(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive; then the rest of the body is read and ignored."""
        keep = len(self.delimiter) - 1
        while True:
            at = self.buf.find(self.delimiter)
            if at >= 0:
                if at:
                    yield bytes(self.buf[:at])
                del self.buf[:at + len(self.delimiter)]
                break
            if len(self.buf) > keep:
                chunk = bytes(self.buf[:-keep])
                del self.buf[:-keep]
                yield chunk
            await self._fill()
        while not self.eof:  # parts after the file: ignored, as S3 does
            await self._fill()
            if len(self.buf) > MAX_AFTER_FILE:
                raise malformed("too much data after the file")
        if not self.buf.startswith(b"--") and self.delimiter + b"--" not in self.buf:
            raise malformed("the body ends before the closing boundary")


def _part_head(head: bytes) -> tuple[str, str | None, str | None]:
    """(name, filename, content type) of a part's headers."""
    disposition = ctype = None
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            raise malformed("a part header without a colon")
        if name.strip().lower() == "content-disposition":
            disposition = value.strip()
        elif name.strip().lower() == "content-type":
            ctype = value.strip()
    if disposition is None or not disposition.lower().startswith("form-data"):
        raise malformed("a part without Content-Disposition: form-data")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM.finditer(disposition[9:])}
    if not params.get("name"):
        raise malformed("a part without a name")
    return params["name"], params.get("filename"), ctype
