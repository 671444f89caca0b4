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
import os
import re
import secrets
import threading
from collections import deque
from typing import Any

from ...control.function_keys import FunctionKeys
from ...stores.blobs import Blob
from ...stores.objects import MAX_PUT, ObjectInfo, ObjectStore, Origin, check_bucket_name, check_key
from ...stores.s3errors import S3Error
from ...types import FunctionSpec
from . import access
from .context import kept_headers

PARTS_IN_FLIGHT = 2  # parts of a streamed put taken but not stored yet (their memfds are held)
_TOKEN = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP header name, lower case
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _describe(info: ObjectInfo) -> dict[str, Any]:
    out = {"size": info.size, "etag": info.etag, "modified": info.modified,
           "headers": info.headers}
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
            path = self.store.blobs.path(info.blob)
            try:
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
    """A streamed put: parts are copied into one blob, in order, by worker threads while the
    instance writes the next; at most PARTS_IN_FLIGHT wait. Finished, it is a PutObject."""

    def __init__(self, store: ObjectStore, bucket: str, key: str, headers: dict[str, str],
                 origin: Origin, writer: Any) -> None:
        self.store, self.bucket, self.key = store, bucket, key
        self.headers, self.origin, self.writer = headers, origin, writer
        self.size = 0  # bytes announced so far
        self.pending: deque[asyncio.Future] = deque()  # copies, oldest first, until done
        self.failed: BaseException | None = None
        self.stop = threading.Event()  # set by abort: a copy in progress gives up

    async def append(self, fd: int, size: int) -> None:
        try:
            if self.failed is not None:
                raise self.failed
            if self.size + size > MAX_PUT:
                raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum "
                              "allowed size", MaxSizeAllowed=str(MAX_PUT))
        except BaseException:
            os.close(fd)
            raise
        self.size += size
        previous = self.pending[-1] if self.pending else None
        self.pending.append(asyncio.ensure_future(self._copy(previous, fd, size)))
        while len(self.pending) > PARTS_IN_FLIGHT:
            await asyncio.wait([self.pending[0]])
            self._prune()
        self._prune()
        if self.failed is not None:
            raise self.failed

    async def _copy(self, previous: asyncio.Future | None, fd: int, size: int) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            if self.failed is None and not self.stop.is_set():
                await asyncio.to_thread(self.writer.copy_fd, fd, size, True, self.stop)
        except Exception as exc:
            self.failed = self.failed or exc
        finally:
            os.close(fd)

    def _prune(self) -> None:
        while self.pending and self.pending[0].done():
            self.pending.popleft()

    async def _drain(self) -> None:
        """Wait until no copy runs (a copy is never dropped from `pending` before it ends, so
        the writer is never discarded under a running thread)."""
        if self.pending:
            await asyncio.wait(list(self.pending))
        self._prune()

    async def finish(self) -> dict[str, Any]:
        await self._drain()
        if self.failed is not None:
            raise self.failed
        blob: Blob = await asyncio.to_thread(self.writer.finish)
        info = await self.store.put_blob(self.bucket, self.key, blob, headers=self.headers,
                                         origin=self.origin)
        return {"etag": info.etag, "size": info.size}

    async def abort(self) -> None:
        self.stop.set()
        await self._drain()
        await asyncio.to_thread(self.writer.discard)
