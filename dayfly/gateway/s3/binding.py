"""The S3 endpoint's object operations for bucket bindings: requests that arrive over an
instance's channel (sandbox/bindings.py) instead of HTTP.

The grants are the function key's scope, read at every request as for a signed request
(`access.require`: a changed `buckets` list or a deleted function counts at once). Reads open
the stored blob read-only and hand over its fd. Writes go through the store's PutObject path
(`put_blob`): the same key and header checks, MD5 ETag, commit, then the bucket event with the
function's key as principal, so triggers and loop protection see the write exactly as if it had
come from the function's S3 key. File work happens in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import threading
from typing import Any

from ...control.function_keys import FunctionKeys
from ...stores import sse
from ...stores.blobs import Blob
from ...stores.objects import MAX_PUT, ObjectInfo, ObjectStore, Origin, check_bucket_name, check_key
from ...stores.s3errors import S3Error
from ...types import FunctionSpec
from . import access
from .context import kept_headers

PIPE_SIZE = 1024 * 1024  # a streamed put's pipe: what an instance may write ahead of the host
SYNC_EVERY = 2 * 1024 * 1024  # bytes of a streamed put stored between flushes to disk
_TOKEN = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP header name, lower case
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _describe(info: ObjectInfo) -> dict[str, Any]:
    out = {"size": info.size, "etag": info.etag, "modified": info.modified,
           "headers": {k: v for k, v in info.headers.items() if not k.startswith(sse.PRIVATE)}}
    if info.checksum:
        out["checksum"] = info.checksum
    return out


def _headers(headers: dict[str, str]) -> dict[str, str]:
    """What the store keeps of them (as from an HTTP PutObject), after the checks HTTP parsing
    would have made."""
    for name, value in headers.items():
        if not _TOKEN.match(name) or _CONTROL.search(value):
            raise S3Error("InvalidArgument", f"header {name[:60]!r}: names are lower-case HTTP "
                          "tokens, values have no control characters")
    return kept_headers(headers.items())


class BindingService:
    """Objects of this node as functions reach them through their bindings."""

    def __init__(self, store: ObjectStore, keys: FunctionKeys) -> None:
        self.store = store
        self.keys = keys
        self._key_ids: dict[tuple[str, str], str] = {}

    def _grant(self, fn: FunctionSpec, bucket: str, need: str) -> Origin:
        """The origin of a request the function's key may make; AccessDenied otherwise."""
        key_id = self._key_ids.get((fn.name, fn.version))
        if key_id is None:
            key_id = self._key_ids[(fn.name, fn.version)] = self.keys.credentials(
                fn.name, fn.version)[0]
        scope = self.keys.scope(key_id)
        if scope is None:
            raise S3Error("AccessDenied", f"Access Denied: function {fn.name} (version "
                          f"{fn.version}) has no bucket access now (no `buckets` declared, or "
                          "the function was deleted)")
        access.require(scope, bucket, need)
        check_bucket_name(bucket)
        return Origin(secrets.token_hex(8).upper(), "", key_id)

    async def head(self, fn: FunctionSpec, bucket: str, key: str) -> dict[str, Any]:
        self._grant(fn, bucket, "read")
        return _describe(await self.store.get_object(bucket, key))

    async def get(self, fn: FunctionSpec, bucket: str, key: str) -> tuple[dict[str, Any], int]:
        self._grant(fn, bucket, "read")
        for _ in range(3):  # the object may be replaced between the lookup and the open
            info = await self.store.get_object(bucket, key)
            if sse.encrypted(info.headers):  # the file holds ciphertext
                raise S3Error("NotImplemented", "An object stored with server-side encryption "
                              "is not handed to functions as a file: read it through the S3 "
                              "endpoint (AWS_ENDPOINT_URL_S3).")
            try:  # a local copy (a cluster node may fetch it first)
                path = await self.store.blobs.local(info.blob)
                fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            return _describe(info), fd
        raise S3Error("NoSuchKey", "The specified key does not exist.", Key=key)

    async def put(self, fn: FunctionSpec, bucket: str, key: str, fd: int, size: int,
                  headers: dict[str, str]) -> dict[str, Any]:
        try:  # no bucket lookup first: the body is already here, and the commit checks it
            origin = self._grant(fn, bucket, "write")
            check_key(key)
            kept = _headers(headers)
            blob = await self.store.blobs.write_fd(fd, size, limit=MAX_PUT)
        finally:
            os.close(fd)
        info = await self.store.put_blob(bucket, key, blob, headers=kept, origin=origin)
        return {"etag": info.etag, "size": info.size}

    async def create(self, fn: FunctionSpec, bucket: str, key: str,
                     headers: dict[str, str]) -> Upload:
        origin = self._grant(fn, bucket, "write")
        check_key(key)
        kept = _headers(headers)
        await self.store.head_bucket(bucket)
        writer = await asyncio.to_thread(self.store.blobs.writer)
        return Upload(self.store, bucket, key, kept, origin, writer)

    async def delete(self, fn: FunctionSpec, bucket: str, keys: list[str]) -> dict[str, Any]:
        origin = self._grant(fn, bucket, "write")
        for key in keys:
            check_key(key)
        await self.store.delete_objects(bucket, keys, origin)
        return {}

    async def list(self, fn: FunctionSpec, bucket: str, prefix: str, start: str,
                   max_keys: int) -> dict[str, Any]:
        self._grant(fn, bucket, "read")
        page = await self.store.list_objects(bucket, prefix=prefix, start=start,
                                             inclusive=not start, max_keys=max_keys)
        objects = [{"key": r["key"], "size": r["size"], "etag": r["etag"],
                    "modified": r["modified"]} for r in page.rows]
        return {"objects": objects, "truncated": page.truncated}


class Upload:
    """A streamed put: the instance writes into a pipe; whenever it is readable, a worker
    thread drains it into the blob (hashing what it stores), so the instance blocks only while
    the host is behind, and holds no more than the pipe's buffer. Every SYNC_EVERY bytes,
    another thread flushes what is stored so far to disk (never in the drain's way), so the
    final fsync is short. Finished, it is a PutObject."""

    def __init__(self, store: ObjectStore, bucket: str, key: str, headers: dict[str, str],
                 origin: Origin, writer: Any) -> None:
        self.store, self.bucket, self.key = store, bucket, key
        self.headers, self.origin, self.writer = headers, origin, writer
        self.rfd, self.fd = os.pipe2(os.O_CLOEXEC)  # fd: the write end, for the instance
        os.set_blocking(self.rfd, False)
        with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups per megabyte
            fcntl.fcntl(self.rfd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.buf = memoryview(bytearray(PIPE_SIZE))
        self.received = 0  # bytes stored so far (guarded by being touched by one drain at once)
        self.synced = 0  # bytes stored when the last flush started
        self.syncing: asyncio.Future | None = None
        self.eof = False
        self.failed: BaseException | None = None
        self.stop = threading.Event()  # set by abort: a drain in progress gives up
        self.draining: asyncio.Future | None = None
        self.changed = asyncio.Event()  # set when a drain ends
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.rfd, self._readable)

    def _readable(self) -> None:
        self.loop.remove_reader(self.rfd)
        self.draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            self.eof = await asyncio.to_thread(self._drain_now)
        except Exception as exc:
            self.failed = self.failed or exc
            self._close_pipe()  # the instance's next write fails at once instead of blocking
        if not (self.eof or self.failed or self.stop.is_set()):
            self.loop.add_reader(self.rfd, self._readable)
        if self.received - self.synced >= SYNC_EVERY and (
                self.syncing is None or self.syncing.done()):
            self.synced = self.received
            self.syncing = asyncio.ensure_future(asyncio.to_thread(self.writer.sync))
        self.changed.set()

    def _drain_now(self) -> bool:
        """In a worker thread: store what the pipe holds; True at its end."""
        while not self.stop.is_set():
            try:
                n = os.readv(self.rfd, [self.buf])
            except BlockingIOError:
                return False
            if n == 0:
                return True
            if self.received + n > MAX_PUT:
                raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum "
                              "allowed size", MaxSizeAllowed=str(MAX_PUT))
            self.writer.write(self.buf[:n])
            self.received += n
        return False

    def _close_pipe(self) -> None:
        if self.rfd >= 0:
            self.loop.remove_reader(self.rfd)
            os.close(self.rfd)
            self.rfd = -1

    async def _quiet(self) -> None:
        """Stop reading: no drain runs once this returns, and none starts again (the pipe is
        closed only then: never under a thread reading it)."""
        self.stop.set()
        if self.rfd >= 0:
            self.loop.remove_reader(self.rfd)
        running = [f for f in (self.draining, self.syncing) if f is not None]
        if running:
            await asyncio.wait(running)
        self._close_pipe()

    async def finish(self, size: int) -> dict[str, Any]:
        """Once `size` bytes have arrived (or the pipe ended, or failed): store the object."""
        while self.received < size and not self.eof and self.failed is None:
            self.changed.clear()
            await self.changed.wait()
        await self._quiet()
        if self.failed is not None:
            raise self.failed
        if self.received != size:
            raise S3Error("IncompleteBody", f"the pipe carried {self.received} bytes, the "
                          f"close announced {size}")
        blob: Blob = await asyncio.to_thread(self.writer.finish)
        info = await self.store.put_blob(self.bucket, self.key, blob, headers=self.headers,
                                         origin=self.origin)
        return {"etag": info.etag, "size": info.size}

    async def abort(self) -> None:
        if self.fd >= 0:  # never handed to the instance
            os.close(self.fd)
            self.fd = -1
        await self._quiet()
        self.changed.set()
        await asyncio.to_thread(self.writer.discard)
