"""Object content on disk: immutable files named by id, written to a temp file, fsynced, renamed.

A blob is never modified after its rename and is named by a random id, never by an object key,
so no key can reach a path of its own choosing. Metadata (in SQLite) points at blobs; a blob no
row points at (a crash between rename and commit) is removed by `sweep` at start.

This is the single-node backend; jsblobs.JetStreamBlobStore (cluster) keeps the same interface
with the content in a JetStream object store and these files as its cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import checksums
from .s3errors import S3Error

FLUSH = 1024 * 1024  # bytes buffered before one write (hash + write happen off the event loop)
SLICE = 16 * 1024 * 1024  # bytes copied from a file descriptor per worker-thread call
Transform = Callable[[bytes | bytearray | memoryview], bytes]  # plaintext → what is stored


@dataclass(frozen=True, slots=True)
class Blob:
    """A written blob: its id, size, MD5 and the extra digests that were asked for."""

    id: str
    size: int
    md5: bytes
    digests: dict[str, bytes] = field(default_factory=dict)


class _Writer:
    """One blob being written: hashes and appends in a worker thread, renames on `finish`."""

    def __init__(self, store: BlobStore, algorithms: Iterable[str],
                 encrypt: Transform | None = None) -> None:
        self.store = store
        self.encrypt = encrypt  # what is hashed is the plaintext; the file gets this
        self.id = uuid.uuid4().hex
        self.tmp = store.tmp / self.id
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.md5 = hashlib.md5()
        self.digests = {a: checksums.new(a) for a in algorithms}
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.md5.update(data)
        for d in self.digests.values():
            d.update(data)
        view = memoryview(self.encrypt(data) if self.encrypt is not None else data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)

    def copy_fd(self, fd: int, size: int, offset: int = 0) -> None:
        """Append bytes [offset, offset + size) of the regular file `fd` (read into our own
        buffer, so what is hashed is what is written, whatever the file's owner does
        meanwhile)."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise S3Error("InvalidArgument", "the body must be a regular file or a memfd")
        if st.st_size < offset + size:
            raise S3Error("IncompleteBody", f"the file holds {st.st_size} bytes, fewer than "
                          f"the {offset + size} announced")
        view = memoryview(bytearray(max(1, min(FLUSH, size))))
        done = 0
        while done < size:
            try:
                n = os.preadv(fd, [view[:size - done]], offset + done)
            except OSError as exc:
                raise S3Error("InvalidArgument", f"the body cannot be read: {exc}") from None
            if n == 0:
                raise S3Error("IncompleteBody", f"the file ended after {done} of the {size} "
                              "bytes announced")
            self.write(view[:n])
            done += n

    def sync(self) -> None:
        """Write what was appended so far to disk, so that `finish` has only the rest to wait
        for."""
        os.fdatasync(self.fd)

    def finish(self) -> Blob:
        if self.store.fsync:
            os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        final = self.store.path(self.id)
        final.parent.mkdir(exist_ok=True)
        os.rename(self.tmp, final)
        if self.store.fsync:
            _fsync_dir(final.parent)
        return Blob(self.id, self.size, self.md5.digest(),
                    {a: d.digest() for a, d in self.digests.items()})

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under `<root>/<2 hex>/<id>`, temp files under `<root>/tmp` (same filesystem)."""

    fsync = True  # whether a blob is on disk before it is returned (here: the only copy)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        return self.root / blob_id[:2] / blob_id

    def writer(self, algorithms: Iterable[str] = ()) -> _Writer:
        """A new blob to fill (`copy_fd`, `write`), then `finish` or `discard`; every call
        blocks: make them from a thread."""
        return _Writer(self, algorithms)

    async def write_fd(self, fd: int, size: int, *, limit: int,
                       algorithms: Iterable[str] = ()) -> Blob:
        """A new blob holding the first `size` bytes of the regular file `fd`, copied in
        worker threads a slice at a time (a large body does not hold one thread throughout;
        a small one takes one hop: create, copy, fsync, rename)."""
        if size > limit:
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed "
                          "size", MaxSizeAllowed=str(limit))
        w, blob = None, None
        for offset in range(0, max(size, 1), SLICE):  # once at least: is `fd` a file?
            n = min(SLICE, size - offset)
            w, blob = await asyncio.to_thread(self._write_slice, w, fd, offset, n,
                                              offset + n >= size, algorithms)
        assert blob is not None
        return blob

    def _write_slice(self, w: _Writer | None, fd: int, offset: int, n: int, last: bool,
                     algorithms: Iterable[str]) -> tuple[_Writer, Blob | None]:
        """One worker-thread step of `write_fd`: the first makes the blob, the last finishes
        it; a failure discards it."""
        w = w or _Writer(self, algorithms)
        try:
            w.copy_fd(fd, n, offset)
            return w, w.finish() if last else None
        except BaseException:
            w.discard()
            raise

    async def write(self, chunks: AsyncIterable[bytes], *, limit: int,
                    algorithms: Iterable[str] = (),
                    encrypt: Transform | None = None) -> Blob:
        """Stream `chunks` into a new blob; more than `limit` bytes raises EntityTooLarge.
        `encrypt` (sse.py) turns the hashed plaintext into what is stored."""
        w = _Writer(self, algorithms, encrypt)
        # the previous buffer is hashed and written in a worker thread while the next one is
        # received (both release the GIL): a large body streams at the slower of the two, not
        # their sum
        writing: asyncio.Future[None] | None = None
        try:
            buf, total = bytearray(), 0
            async for chunk in chunks:
                total += len(chunk)
                if total > limit:
                    raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum "
                                  "allowed size", MaxSizeAllowed=str(limit))
                buf += chunk
                if len(buf) >= FLUSH:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(asyncio.to_thread(w.write, buf))
                    buf = bytearray()
            if writing is not None:
                await writing
                writing = None
            if buf:
                await asyncio.to_thread(w.write, buf)
            return await asyncio.to_thread(w.finish)
        except BaseException:
            if writing is not None:  # let the worker finish with the file before it goes
                with contextlib.suppress(BaseException):
                    await asyncio.shield(writing)
            w.discard()
            raise

    async def concat(self, ids: list[str], algorithms: Iterable[str] = ()) -> Blob:
        """A new blob holding the given blobs one after the other."""
        return await self.write(self._read_many([(i, 0, None) for i in ids]), limit=1 << 62,
                                algorithms=algorithms)

    async def copy_range(self, blob_id: str, start: int, end: int,
                         algorithms: Iterable[str] = ()) -> Blob:
        """A new blob holding bytes [start, end] (inclusive) of another."""
        return await self.write(self._read_many([(blob_id, start, end)]), limit=1 << 62,
                                algorithms=algorithms)

    async def _read_many(self, spans: list[tuple[str, int, int | None]]
                         ) -> AsyncIterator[bytes]:
        for blob_id, start, end in spans:
            async for chunk in await self.open(blob_id, start, end):
                yield chunk

    async def open(self, blob_id: str, start: int = 0, end: int | None = None
                   ) -> AsyncIterator[bytes]:
        """The bytes [start, end] (inclusive; None: to the end) of a blob. The file is opened
        now (FileNotFoundError now, not mid-stream) and closed when the iterator ends."""
        f = await asyncio.to_thread(open, self.path(blob_id), "rb")
        return _chunks(f, start, end)

    async def local(self, blob_id: str) -> Path:
        """A local file holding the blob, for handing to an instance (here: its own file)."""
        return self.path(blob_id)

    def link(self, blob_id: str) -> str:
        """A new id for the same content (a hard link: blobs are immutable, so it is a copy)."""
        new = uuid.uuid4().hex
        final = self.path(new)
        final.parent.mkdir(exist_ok=True)
        os.link(self.path(blob_id), final)
        _fsync_dir(final.parent)
        return new

    def remove(self, *blob_ids: str) -> None:
        for blob_id in blob_ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(blob_id))

    def sweep(self, referenced: set[str]) -> int:
        """Remove temp files and blobs no metadata points at; returns how many."""
        removed = 0
        for entry in self.root.iterdir():
            if not entry.is_dir() or (entry != self.tmp and len(entry.name) != 2):
                continue
            for f in entry.iterdir():
                if entry == self.tmp or f.name not in referenced:
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
                        removed += 1
        return removed


async def _chunks(f: BinaryIO, start: int, end: int | None) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(f.seek, start)
        left = None if end is None else end - start + 1
        while left is None or left > 0:
            data = await asyncio.to_thread(f.read, FLUSH if left is None else min(FLUSH, left))
            if not data:
                break
            if left is not None:
                left -= len(data)
            yield data
    finally:
        f.close()
