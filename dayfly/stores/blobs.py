"""Object content on disk: immutable files named by id, written to a temp file, fsynced, renamed.

A blob is never modified after its rename and is named by a random id, never by an object key,
so no key can reach a path of its own choosing. Metadata (in SQLite) points at blobs; a blob no
row points at (a crash between rename and commit) is removed by `sweep` at start.

This is the single-node backend; jsblobs.JetStreamBlobStore (cluster) keeps the same interface
with the content in a JetStream object store and these files as its cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import queue
import stat
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import checksums
from .s3errors import S3Error

FLUSH = 1024 * 1024  # bytes gathered before they are handed to the worker threads
AHEAD = 8  # batches of one large body handed over and not yet hashed and written, at most
SYNC_EVERY = 16 * 1024 * 1024  # bytes of a large body written between background fdatasyncs
READ = 1024 * 1024  # bytes of a blob read per worker-thread call (GET)
SLICE = 16 * 1024 * 1024  # bytes copied from a file descriptor per worker-thread call
IOV_MAX = 1024  # buffers per writev (Linux's limit)
LANES = 48  # worker threads of large bodies at once in the process (Lane)
Buffer = bytes | bytearray | memoryview
Transform = Callable[[Buffer], bytes]  # plaintext → what is stored


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
                 encrypt: Transform | None = None, create: bool = True) -> None:
        self.store = store
        self.encrypt = encrypt  # what is hashed is the plaintext; the file gets this
        self.id = uuid.uuid4().hex
        self.tmp = store.tmp / self.id
        self.fd = -1
        if create:  # else `create` is called before the first append, in a worker thread
            self.create()
        self.md5 = hashlib.md5()
        self.digests = {a: checksums.new(a) for a in algorithms}
        self.size = 0

    def create(self) -> None:
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, data: Buffer) -> None:
        self.hash_md5([data])
        self.append([data])

    def hash_md5(self, batch: list[Buffer]) -> None:
        for data in batch:
            self.md5.update(data)

    def append(self, batch: list[Buffer]) -> None:
        """The digests other than the MD5, then the bytes (encrypted) at the file's end."""
        for data in batch:
            for d in self.digests.values():
                d.update(data)
            self.size += len(data)
        _write_all(self.fd, [self.encrypt(d) for d in batch] if self.encrypt else batch)

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


def _write_all(fd: int, batch: list[Buffer]) -> None:
    """writev until every byte of `batch` is written."""
    views = [memoryview(b) for b in batch if len(b)]
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i:i + IOV_MAX])
        while n:
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i], n = views[i][n:], 0


class Lane:
    """A worker thread running the jobs given to it one after another; after one fails, the
    rest fail with the same error without running. At most LANES run at once in the process
    (`reserve`): many slow uploads at a time cannot make the node start thousands of
    threads; a body that finds none spare is written the slower way, in the shared executor."""

    _lock = threading.Lock()
    running = 0  # lanes started and not ended, or reserved (guarded by _lock)

    @classmethod
    def reserve(cls, n: int) -> bool:
        """Reserve `n` lanes (each Lane() then takes one up); False when LANES would be passed."""
        with cls._lock:
            if cls.running + n > LANES:
                return False
            cls.running += n
            return True

    @classmethod
    def release(cls, n: int = 1) -> None:
        with cls._lock:
            cls.running -= n

    def __init__(self, name: str) -> None:
        """A lane that `reserve` made room for."""
        self.jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[None], Callable[..., None],
                                           tuple[object, ...]] | None] = queue.SimpleQueue()
        self.failed: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        try:
            self.thread.start()
        except BaseException:
            Lane.release()
            raise

    def submit(self, fn: Callable[..., None], *args: object) -> concurrent.futures.Future[None]:
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.jobs.put((fut, fn, args))
        return fut

    def _run(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                fut, fn, args = job
                if self.failed is not None:
                    fut.set_exception(self.failed)
                    continue
                try:
                    fn(*args)
                    fut.set_result(None)
                except BaseException as exc:  # handed to whoever waits for the job
                    self.failed = exc
                    fut.set_exception(exc)
        finally:
            Lane.release()

    def stop(self, why: BaseException | None = None) -> None:
        """No more jobs; with `why`, the ones not started yet fail instead of running."""
        if why is not None and self.failed is None:
            self.failed = why
        self.jobs.put(None)


class _Pipeline:
    """A large body's way to its file. The MD5 (the ETag: the slowest step, and sequential) is
    computed in one thread, the other digests and the writes in a second, each in order, while
    the event loop receives the next batch (hashlib, zlib and os.writev release the GIL), so a
    body streams at the speed of its MD5 rather than the sum of the steps. A third thread
    fdatasyncs what is written every SYNC_EVERY bytes, so the disk writes during the upload and
    the final fsync has only the tail left. At most AHEAD batches wait for the threads."""

    def __init__(self, w: _Writer, sync: bool) -> None:
        """With `lanes(sync)` reserved; RuntimeError if a thread cannot be started."""
        self.w = w
        names = ["dayfly-blob-md5", "dayfly-blob-write"] + (["dayfly-blob-sync"] if sync else [])
        started: list[Lane] = []
        try:
            for name in names:
                started.append(Lane(name))
        except BaseException:
            for lane in started:
                lane.stop()
            Lane.release(len(names) - len(started) - 1)  # (the failed one released its own)
            raise
        self.md5, self.io = started[0], started[1]
        self.sync = started[2] if sync else None
        self.pending: deque[concurrent.futures.Future[None]] = deque([self.io.submit(w.create)])
        # the two fields below are used by the io lane's thread only (and by `drain` after it)
        self.unsynced = 0
        self.synced: concurrent.futures.Future[None] | None = None

    async def feed(self, batch: list[Buffer]) -> None:
        self.pending.append(self.md5.submit(self.w.hash_md5, batch))
        self.pending.append(self.io.submit(self._append, batch))
        while self.pending and self.pending[0].done():
            self.pending.popleft().result()  # a failed write ends the upload now
        while len(self.pending) > 2 * AHEAD:
            await asyncio.wrap_future(self.pending.popleft())

    def _append(self, batch: list[Buffer]) -> None:
        self.w.append(batch)
        self.unsynced += sum(len(b) for b in batch)
        if self.sync is not None and self.unsynced >= SYNC_EVERY and (
                self.synced is None or self.synced.done()):
            if self.synced is not None:
                self.synced.result()  # an fdatasync that failed fails the blob
            self.synced = self.sync.submit(os.fdatasync, self.w.fd)
            self.unsynced = 0

    async def drain(self) -> None:
        """Wait until every batch is hashed and written (and the last background sync)."""
        while self.pending:
            await asyncio.wrap_future(self.pending.popleft())
        if self.synced is not None:
            await asyncio.wrap_future(self.synced)

    @staticmethod
    def lanes(sync: bool) -> int:
        return 3 if sync else 2

    def stop(self, why: BaseException | None = None) -> None:
        for lane in (self.md5, self.io, self.sync):
            if lane is not None:
                lane.stop(why)

    def join(self) -> None:
        """Blocks until the threads are gone (after `stop`): none uses the file any more."""
        for lane in (self.md5, self.io, self.sync):
            if lane is not None:
                lane.thread.join()


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

    async def write(self, chunks: AsyncIterable[Buffer], *, limit: int,
                    algorithms: Iterable[str] = (),
                    encrypt: Transform | None = None) -> Blob:
        """Stream `chunks` into a new blob; more than `limit` bytes raises EntityTooLarge.
        `encrypt` (sse.py) turns the hashed plaintext into what is stored. A body under FLUSH
        bytes takes one worker-thread hop; a larger one goes through a _Pipeline."""
        w = _Writer(self, algorithms, encrypt, create=False)  # no file system call on the loop
        pipe: _Pipeline | None = None
        finishing: asyncio.Future[Blob] | None = None
        try:
            batch: list[Buffer] = []
            gathered = total = 0
            serial = False
            async for chunk in chunks:
                total += len(chunk)
                if total > limit:
                    raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum "
                                  "allowed size", MaxSizeAllowed=str(limit))
                batch.append(chunk)  # no copy: the threads read the received buffers
                gathered += len(chunk)
                if gathered >= FLUSH:
                    if pipe is None and not serial:
                        if Lane.reserve(_Pipeline.lanes(self.fsync)):
                            try:
                                pipe = _Pipeline(w, self.fsync)
                            except RuntimeError:  # no thread could be started
                                serial = True
                        else:  # LANES busy: hashed and written a batch at a time, as before
                            serial = True
                    if pipe is not None:
                        await pipe.feed(batch)
                    else:
                        await asyncio.to_thread(_append, w, batch)
                    batch, gathered = [], 0
            if pipe is not None:
                await pipe.feed(batch)
                await pipe.drain()
                pipe.stop()
                batch = []
            # from here the thread owns the file: it finishes the blob or discards it
            finishing = asyncio.ensure_future(asyncio.to_thread(_finish, w, batch))
            return await asyncio.shield(finishing)
        except BaseException as exc:
            if finishing is not None:  # cancelled while the thread finishes: its blob goes
                finishing.add_done_callback(self._drop)
                raise
            # the threads may still be hashing or writing: the file is closed and removed only
            # once they are gone, in a thread of its own that a cancellation does not stop
            if pipe is not None:
                pipe.stop(exc)
            await asyncio.shield(asyncio.to_thread(_abandon, w, pipe))
            raise

    def _drop(self, job: asyncio.Future[Blob]) -> None:
        if not job.cancelled() and job.exception() is None:
            # the local file only (a shared store has not been told of it yet)
            asyncio.get_running_loop().run_in_executor(None, BlobStore.remove, self,
                                                       job.result().id)

    async def concat(self, ids: list[str], algorithms: Iterable[str] = ()) -> Blob:
        """A new blob holding the given blobs one after the other."""
        return await self.write(self._read_many([(i, 0, None) for i in ids]), limit=1 << 62,
                                algorithms=algorithms)

    async def copy_range(self, blob_id: str, start: int, end: int,
                         algorithms: Iterable[str] = (),
                         encrypt: Transform | None = None) -> Blob:
        """A new blob holding bytes [start, end] (inclusive) of another (through `encrypt`)."""
        return await self.write(self._read_many([(blob_id, start, end)]), limit=1 << 62,
                                algorithms=algorithms, encrypt=encrypt)

    async def _read_many(self, spans: list[tuple[str, int, int | None]]
                         ) -> AsyncIterator[bytes]:
        for blob_id, start, end in spans:
            async for chunk in await self.open(blob_id, start, end):
                yield chunk

    async def open(self, blob_id: str, start: int = 0, end: int | None = None
                   ) -> AsyncIterator[bytes]:
        """The bytes [start, end] (inclusive; None: to the end) of a blob. The file is opened
        now (FileNotFoundError now, not mid-stream) and closed when the iterator ends."""
        return await open_range(self.path(blob_id), start, end)

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


def _append(w: _Writer, batch: list[Buffer]) -> None:
    if w.fd < 0:
        w.create()
    w.hash_md5(batch)
    w.append(batch)


def _finish(w: _Writer, batch: list[Buffer]) -> Blob:
    """The last bytes (a small body: all of them), fsync, rename; on failure, discard."""
    try:
        if w.fd < 0:
            w.create()
        w.hash_md5(batch)
        w.append(batch)
        return w.finish()
    except BaseException:
        w.discard()
        raise


def _abandon(w: _Writer, pipe: _Pipeline | None) -> None:
    if pipe is not None:
        pipe.join()
    w.discard()


async def open_range(path: Path, start: int, end: int | None) -> AsyncIterator[bytes]:
    """The file's bytes [start, end] (inclusive; None: to the end): opened, and its first
    READ bytes read, in one worker-thread hop (all of a small object's GET)."""
    f, first = await asyncio.to_thread(_open_first, path, start, end)
    return _chunks(f, start, end, first)


def _open_first(path: Path, start: int, end: int | None) -> tuple[BinaryIO | None, bytes]:
    """(the open file, or None once read to the end; its first bytes from `start`)."""
    f = open(path, "rb")  # noqa: SIM115 - closed here or by _chunks
    try:
        f.seek(start)
        want = READ if end is None else max(0, min(READ, end - start + 1))
        first = f.read(want) if want else b""
        if len(first) < want or (end is not None and start + len(first) > end):
            f.close()
            return None, first
        return f, first
    except BaseException:
        f.close()
        raise


async def _chunks(f: BinaryIO | None, start: int, end: int | None,
                  first: bytes) -> AsyncIterator[bytes]:
    """`first`, then the rest of [start, end] READ at a time; the next read runs in a worker
    thread while the previous chunk is sent. `f` None: `first` was all of it."""
    left = None if end is None else end - start + 1 - len(first)

    def read() -> bytes:
        assert f is not None
        return f.read(READ if left is None else min(READ, left))
    ahead: asyncio.Future[bytes] | None = None
    try:
        if f is not None and (left is None or left > 0):
            ahead = asyncio.ensure_future(asyncio.to_thread(read))
        if first:
            yield first
        while ahead is not None:
            data = await ahead
            ahead = None
            if not data:
                break
            if left is not None:
                left -= len(data)
            if left is None or left > 0:
                ahead = asyncio.ensure_future(asyncio.to_thread(read))
            yield data
    finally:
        if ahead is not None:  # a reader gone early: the read in flight ends before the close
            with contextlib.suppress(BaseException):
                await asyncio.shield(ahead)
        if f is not None:
            f.close()
