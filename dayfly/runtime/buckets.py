"""Bucket bindings inside an instance: `context.buckets`, the function's declared buckets reached
over its own channel to the host instead of HTTP (docs/runtime-protocol.md, "Bucket bindings").

A read hands the instance a read-only fd of the stored object: nothing is copied until the
function reads, and it reads from the page cache. A write hands the host an fd of what the
function wrote (a memfd), or streams into a pipe the host reads; the host stores it as
PutObject does: same checks, ETag, bucket notifications and triggers. Requests are answered only while an
invocation runs, one at a time; what may be read or written is the function's `buckets`
declaration, checked by the host on every request.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from . import protocol

_LIST_PAGE = 1000


class BucketError(Exception):
    """The host refused or failed a request: S3's error code, its HTTP status, the message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class StoredObject(io.FileIO):
    """An object open for reading: a read-only, seekable file of its content (`fileno()` can be
    mmapped), and its `size`, `etag`, `modified`, `content_type`, `metadata` and `headers`."""

    def _describe(self, meta: dict) -> StoredObject:
        self.size: int = meta["size"]
        self.etag: str = meta["etag"]
        self.modified: float = meta["modified"]
        self.headers: dict[str, str] = meta.get("headers", {})
        self.checksum: dict[str, str] | None = meta.get("checksum")
        self.content_type = self.headers.get("content-type", "binary/octet-stream")
        self.metadata = {k[11:]: v for k, v in self.headers.items() if k.startswith("x-amz-meta-")}
        return self


def _headers(content_type: str | None, metadata: dict[str, str] | None) -> dict[str, str]:
    out = {"content-type": content_type} if content_type else {}
    out.update({f"x-amz-meta-{k.lower()}": v for k, v in (metadata or {}).items()})
    return out


class Buckets:
    """The function's buckets; safe to share between threads (requests take turns)."""

    Error = BucketError  # `except context.buckets.Error`, without importing dayfly

    def __init__(self, channel: Any) -> None:
        self._channel = channel  # instance.Channel: `sock`, and `lock` for whole frames
        self._lock = threading.Lock()  # one request and its answer at a time; guards _active, _n
        self._active = False
        self._n = 0

    def _begin(self) -> None:
        """An invocation starts: requests are answered from now on."""
        with self._lock:
            self._active = True

    def _end(self) -> None:
        """The handler returned: wait for a request in flight (its answer is on the channel
        before the result), then refuse new ones (a thread left running cannot read the next
        invocation's frames)."""
        with self._lock:
            self._active = False

    def request(self, meta: dict, fd: int = -1) -> tuple[dict, int]:
        """Send one request (with `fd`, which stays the caller's) and return the answer and the
        fd it carries (-1 if none, else the caller's to close). Refusals raise BucketError."""
        with self._lock:
            if not self._active:
                raise BucketError("InvalidRequest", "bucket requests are answered only while an "
                                  "invocation runs (this one has returned)")
            self._n += 1
            meta = {**meta, "n": self._n, **({"fd": 1} if fd >= 0 else {})}
            frame = protocol.encode(protocol.BUCKET, meta)
            chan = self._channel
            with chan.lock:
                sent = socket.send_fds(chan.sock, [frame], [fd]) if fd >= 0 else 0
                chan.sock.sendall(frame[sent:])
            try:
                kind, answer, _, fds = protocol.read_with_fds(chan.sock)
            except EOFError:
                raise BucketError("ServiceUnavailable", "the host closed the channel",
                                  503) from None
        got = fds.pop(0) if fds else -1
        for extra in fds:
            os.close(extra)
        if kind != protocol.ANSWER or answer.get("n") != meta["n"] or "error" in answer:
            if got >= 0:
                os.close(got)
            err = answer.get("error") if kind == protocol.ANSWER else None
            if not isinstance(err, dict):
                raise BucketError("InternalError", "the host's answer does not match the "
                                  "request", 500)
            raise BucketError(err.get("code", "InternalError"), err.get("message", ""),
                              err.get("status", 500))
        return answer, got

    # -- reads -----------------------------------------------------------------------------------

    def head(self, bucket: str, key: str) -> dict:
        """{size, etag, modified, headers, checksum?}; BucketError NoSuchKey if there is none."""
        answer, _ = self.request({"op": "head", "bucket": bucket, "key": key})
        answer.pop("n", None)
        return answer

    def open(self, bucket: str, key: str) -> StoredObject:
        """The object, open for reading (close it, or use `with`)."""
        answer, fd = self.request({"op": "get", "bucket": bucket, "key": key})
        if fd < 0:
            raise BucketError("InternalError", "the host sent no file for the object", 500)
        return StoredObject(fd, "rb", closefd=True)._describe(answer)

    def get(self, bucket: str, key: str) -> bytes:
        """The whole content (for small objects; `open` streams)."""
        with self.open(bucket, key) as f:
            return f.read()

    def list(self, bucket: str, prefix: str = "") -> Iterator[dict]:
        """Every object under `prefix`, in key order: {key, size, etag, modified}."""
        start = ""
        while True:
            answer, _ = self.request({"op": "list", "bucket": bucket, "prefix": prefix,
                                      "start": start, "max_keys": _LIST_PAGE})
            yield from answer["objects"]
            if not answer["truncated"] or not answer["objects"]:
                return
            start = answer["objects"][-1]["key"]

    # -- writes ----------------------------------------------------------------------------------

    def put(self, bucket: str, key: str, data: Any, content_type: str | None = None,
            metadata: dict[str, str] | None = None) -> dict:
        """Store bytes (or the whole of an open regular file); {etag, size}."""
        own = not hasattr(data, "fileno")
        if own:
            view = memoryview(data).cast("B")
            fd = os.memfd_create("dayfly-put", os.MFD_CLOEXEC)
            size = len(view)
            while view:
                view = view[os.write(fd, view):]
        else:
            fd = data.fileno()
            size = os.fstat(fd).st_size
        try:
            answer, _ = self.request({"op": "put", "bucket": bucket, "key": key, "size": size,
                                      "headers": _headers(content_type, metadata)}, fd)
        finally:
            if own:
                os.close(fd)
        return {"etag": answer["etag"], "size": answer["size"]}

    def writer(self, bucket: str, key: str, content_type: str | None = None,
               metadata: dict[str, str] | None = None) -> ObjectWriter:
        """A file to write one object into, streaming (see ObjectWriter)."""
        return ObjectWriter(self, bucket, key, _headers(content_type, metadata))

    def delete(self, bucket: str, *keys: str) -> None:
        """Delete keys (missing ones are no error, as in S3)."""
        for i in range(0, len(keys), 1000):
            self.request({"op": "delete", "bucket": bucket, "keys": list(keys[i:i + 1000])})


class ObjectWriter(io.RawIOBase):
    """Writes one object as a stream: `open` answers with the write end of a pipe whose other
    end the host reads as bytes arrive (hashing and storing them), so the instance holds no
    more than the pipe's buffer and a write blocks only while the host is behind. `close()`
    makes it the object; `abort()`, or an exception inside `with`, stores nothing. The ETag is
    the content's MD5, as for a single PutObject."""

    def __init__(self, buckets: Buckets, bucket: str, key: str, headers: dict[str, str]) -> None:
        super().__init__()
        answer, fd = buckets.request({"op": "open", "bucket": bucket, "key": key,
                                      "headers": headers})
        if fd < 0:
            raise BucketError("InternalError", "the host sent no pipe for the object", 500)
        self._buckets, self._upload, self._fd = buckets, answer["upload"], fd
        self.bucket, self.key = bucket, key
        self.size = 0
        self.etag = ""
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._done:
            raise ValueError(f"{self.key}: write after the object was finished or abandoned")
        view = memoryview(data).cast("B")
        n = len(view)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except BrokenPipeError:
            raise BucketError("InternalError", f"{self.key}: the host stopped reading the "
                              "object (aborted, or the invocation ended)", 500) from None
        self.size += n
        return n

    def close(self) -> None:
        """Store the object (a no-op after abort or a first close)."""
        if self._done:
            super().close()
            return
        self._done = True
        try:
            os.close(self._fd)
            self._fd = -1
            answer, _ = self._buckets.request({"op": "close", "upload": self._upload,
                                               "size": self.size})
            self.etag = answer["etag"]
        except BaseException:
            self._abort()
            raise
        finally:
            super().close()

    def abort(self) -> None:
        """Give up: nothing of this object is stored."""
        if not self._done:
            self._done = True
            self._abort()
            super().close()

    def _abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # the host drops unfinished uploads when the invocation ends anyway
        with contextlib.suppress(BucketError):
            self._buckets.request({"op": "abort", "upload": self._upload})

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        if getattr(self, "_done", True) is False:
            self.abort()  # a writer dropped without close() must not store half an object
