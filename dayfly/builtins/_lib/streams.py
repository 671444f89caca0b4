"""File-like streams over S3: a writer that uploads parts in the background as they fill, a
seekable reader over ranged GETs, and a read-ahead reader; memory stays bounded by the part
size, never by the object size."""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .s3 import Body, Client

PART_SIZE = 8 * 1024 * 1024
MIN_PART = 5 * 1024 * 1024  # S3's smallest part but the last


def writer(client: Any, bucket: str, key: str, content_type: str = "application/octet-stream",
           part_size: int = PART_SIZE) -> Any:
    """A file that becomes one object: the client's own streaming writer where it has one (a
    bucket binding's), else an ObjectWriter uploading parts over HTTP."""
    if hasattr(client, "writer"):
        return client.writer(bucket, key, content_type)
    return ObjectWriter(client, bucket, key, content_type, part_size)


def read_ahead(body: Any, chunk: int = 1024 * 1024) -> Any:
    """A reader of `body` with `read_chunk`: a ReadAhead for a network body; a local file (a
    binding's object) is read directly, a thread would only add hand-offs."""
    return FileChunks(body, chunk) if isinstance(body, io.FileIO) else ReadAhead(body, chunk)


def spooled(body: Any) -> Any:
    """A seekable reader for a decoder: a local file as it is, a network body in a Spool."""
    return body if isinstance(body, io.FileIO) else Spool(body)


def seekable(client: Any, bucket: str, key: str, size: int) -> Any:
    """A seekable reader of one object: the stored file itself where the client can open it,
    else ranged GETs (RangeReader)."""
    if hasattr(client, "open"):
        return client.open(bucket, key)
    return RangeReader(client, bucket, key, size)


class ObjectWriter(io.RawIOBase):
    """Writes one object: a single PUT if it stays under one part, else a multipart upload
    whose parts are sent by background threads while the caller produces the next one."""

    def __init__(self, client: Client, bucket: str, key: str,
                 content_type: str = "application/octet-stream", part_size: int = PART_SIZE,
                 uploads_in_flight: int = 2) -> None:
        super().__init__()
        self.client, self.bucket, self.key = client, bucket, key
        self.content_type = content_type
        self.part_size = max(MIN_PART, part_size)
        self.size = 0  # bytes written so far
        self.etag = ""
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Future] = []
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(uploads_in_flight)
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._done:
            raise ValueError(f"{self.key}: write after the object was finished or abandoned")
        n = len(data)
        self._buf += data
        self.size += n
        while len(self._buf) >= self.part_size:
            with memoryview(self._buf) as view:
                part = bytes(view[:self.part_size])  # one copy, handed to the uploader
            del self._buf[:self.part_size]
            self._send(part)
        return n

    def _send(self, part: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self.client.create_multipart(self.bucket, self.key, self.content_type)
            self._pool = ThreadPoolExecutor(2, thread_name_prefix="s3-part")
        for f in self._parts:  # surface a failed part early
            if f.done() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        self._slots.acquire()  # at most N parts in flight: bounded memory
        number = len(self._parts) + 1
        assert self._pool is not None
        fut = self._pool.submit(self.client.upload_part, self.bucket, self.key, self._upload_id,
                                number, part)
        fut.add_done_callback(lambda _f: self._slots.release())
        self._parts.append(fut)

    def close(self) -> None:
        """Finish the object (a no-op after abort or a first close)."""
        if self._done:
            super().close()
            return
        self._done = True
        try:
            if self._upload_id is None:
                self.etag = self.client.put(self.bucket, self.key, bytes(self._buf),
                                            self.content_type)
            else:
                if self._buf or not self._parts:
                    self._send(bytes(self._buf))
                etags = [f.result() for f in self._parts]
                self.etag = self.client.complete_multipart(self.bucket, self.key,
                                                           self._upload_id, etags)
        except BaseException:
            self._abort_upload()
            raise
        finally:
            self._buf = bytearray()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            super().close()

    def abort(self) -> None:
        """Give up: nothing of this object is stored."""
        if not self._done:
            self._done = True
            self._buf = bytearray()
            self._abort_upload()
            super().close()

    def _abort_upload(self) -> None:
        if self._pool is not None:
            for f in self._parts:
                f.cancel()
            self._pool.shutdown(wait=True)
        if self._upload_id is not None:
            # best effort: the error that led here matters more than a failed abort
            with contextlib.suppress(Exception):
                self.client.abort_multipart(self.bucket, self.key, self._upload_id)

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        if getattr(self, "_done", True) is False:
            self.abort()  # a writer dropped without close() must not store half an object


class RangeReader(io.RawIOBase):
    """A seekable, read-only view of one object: each miss fetches one block with a ranged GET
    (zip archives keep their directory at the end, so they cannot be read front to back)."""

    def __init__(self, client: Client, bucket: str, key: str, size: int,
                 block: int = 4 * 1024 * 1024) -> None:
        super().__init__()
        self.client, self.bucket, self.key, self.size = client, bucket, key, size
        self.block = block
        self._pos = 0
        self._cache_start = -1
        self._cache = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf: Any) -> int:
        if self._pos >= self.size:
            return 0
        if not self._cache_start <= self._pos < self._cache_start + len(self._cache):
            start = self._pos
            end = min(self.size, start + max(self.block, len(buf))) - 1
            with self.client.get(self.bucket, self.key, start, end) as body:
                self._cache = body.read()
            self._cache_start = start
        offset = self._pos - self._cache_start
        chunk = self._cache[offset:offset + len(buf)]
        buf[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


class ReadAhead(io.RawIOBase):
    """Reads a GET body in a background thread, a few chunks ahead of the consumer, so network
    transfer overlaps with (de)compression."""

    def __init__(self, body: Body, chunk: int = 1024 * 1024, depth: int = 4) -> None:
        super().__init__()
        self._q: queue.Queue = queue.Queue(depth)
        self._rest = b""
        self._off = 0  # how much of _rest has been handed out
        self._eof = False
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._fill, args=(body, chunk), daemon=True,
                                   name="s3-read-ahead")
        self._t.start()

    def _fill(self, body: Body, chunk: int) -> None:
        try:
            while not self._stop.is_set():
                data = body.read(chunk)
                self._q.put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread
            self._q.put(exc)
        finally:
            body.close()

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes:
        if self._eof:
            return b""
        item = self._q.get()
        if isinstance(item, BaseException):
            raise item
        if not item:
            self._eof = True
        return item

    def readinto(self, buf: Any) -> int:
        if self._off >= len(self._rest):
            self._rest, self._off = self._next(), 0
        n = min(len(buf), len(self._rest) - self._off)
        buf[:n] = memoryview(self._rest)[self._off:self._off + n]
        self._off += n
        return n

    def read_chunk(self) -> bytes:
        """The next chunk as it arrived (b"" at the end): no copy into a caller's buffer."""
        if self._off < len(self._rest):
            out = self._rest[self._off:] if self._off else self._rest
            self._rest, self._off = b"", 0
            return out
        return self._next()

    def close(self) -> None:
        self._stop.set()
        while self._t.is_alive():  # unblock a filler waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                self._t.join(0.05)
        super().close()


class FileChunks(io.RawIOBase):
    """ReadAhead's interface over a local file, in the caller's thread. `read_chunk` hands out
    views of the file mapped into memory, a window at a time (no copy); a view is valid until
    the next call. `read`/`readinto` copy, as a file's do."""

    WINDOW = 8 * 1024 * 1024  # mapped at a time: resident size stays small (granularity multiple)

    def __init__(self, f: io.FileIO, chunk: int = 1024 * 1024) -> None:
        super().__init__()
        self._f, self._chunk = f, chunk
        self._size = os.fstat(f.fileno()).st_size
        self._pos = 0  # of the next byte handed out
        self._base = 0  # file offset of the window
        self._window = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _view(self, n: int) -> memoryview:
        """Up to n bytes at the position, from the mapped window (mapping the next if needed)."""
        if self._pos >= self._base + len(self._window):
            if self._pos >= self._size:
                return memoryview(b"")
            self._base = self._pos - self._pos % self.WINDOW
            length = min(self.WINDOW, self._size - self._base)
            m = mmap.mmap(self._f.fileno(), length, prot=mmap.PROT_READ, offset=self._base)
            m.madvise(mmap.MADV_SEQUENTIAL)
            self._window = memoryview(m)  # the map goes when its last view does
        start = self._pos - self._base
        out = self._window[start:start + n]
        self._pos += len(out)
        return out

    def readinto(self, buf: Any) -> int:
        view = self._view(len(buf))
        buf[:len(view)] = view
        return len(view)

    def read_chunk(self) -> memoryview:
        """The next chunk (empty at the end)."""
        return self._view(self._chunk)

    def close(self) -> None:
        self._window = memoryview(b"")
        self._f.close()
        super().close()


class Spool(io.RawIOBase):
    """A seekable reader over a body that is still arriving: reads past what has arrived wait
    for it, so a decoder can work on the first bytes while the rest is on the wire. Keeps what
    it received (use it for objects that fit in memory, like images)."""

    def __init__(self, body: Body, chunk: int = 256 * 1024) -> None:
        super().__init__()
        self._body, self._chunk = body, chunk
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self.size = body.size

    def _fill(self, upto: int) -> None:
        while len(self._buf) < upto and not self._eof:
            data = self._body.read(self._chunk)
            if not data:
                self._eof = True
                self._body.close()
            self._buf += data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 2:
            self._fill(1 << 62)
        base = {0: 0, 1: self._pos, 2: len(self._buf)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf: Any) -> int:
        self._fill(self._pos + len(buf))
        n = max(0, min(len(buf), len(self._buf) - self._pos))
        buf[:n] = memoryview(self._buf)[self._pos:self._pos + n]
        self._pos += n
        return n

    def getvalue(self) -> bytes:
        """Everything (reading the rest of the body first)."""
        self._fill(1 << 62)
        return bytes(self._buf)
