"""A JetStream object store, read and written as files: NATS's own layout (stream
`OBJ_<bucket>`, chunks on `$O.<bucket>.C.<nuid>`, one rolled-up meta message per name on
`$O.<bucket>.M.<base64url name>`), so `nats object` and other clients see the same objects.

nats-py's ObjectStore waits one acknowledgement per 128 KiB chunk on put and gathers a
whole object in memory on get; here puts keep WINDOW chunks in flight and gets fetch WINDOW
chunks at a time into a file, hashing off the event loop. A put returns once JetStream
acknowledged every chunk and the meta message; a get checks the size and SHA-256 the meta message names.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar

from nats.aio.client import Client
from nats.js import api
from nats.js.errors import NotFoundError

CHUNK = 512 * 1024  # bytes per chunk message (the server's max_payload is 1 MiB by default)
WINDOW = 32  # chunks published and not yet acknowledged, at most
FETCH_TIMEOUT_S = 10.0  # a get waits this long for its next batch of chunks
ROLLUP = {"Nats-Rollup": "sub"}
T = TypeVar("T")


class ObjectMissing(FileNotFoundError):
    """No such object (never written, or deleted)."""


class ObjectCorrupt(Exception):
    """What was read does not match the size or SHA-256 the object's meta message names."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    sha256: bytes
    nuid: str
    chunks: int


class Objects:
    """One object store (one JetStream stream) on a node's connection."""

    def __init__(self, nc: Client, bucket: str, executor: Executor | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.bucket = bucket
        self.stream = f"OBJ_{bucket}"
        self.executor = executor  # file reads, writes and hashing (None: the loop's default)

    def _meta(self, name: str) -> str:
        return f"$O.{self.bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"

    def _chunks(self, nuid: str) -> str:
        return f"$O.{self.bucket}.C.{nuid}"

    async def create(self) -> None:
        """Create the stream unless it exists (file storage, no size limit)."""
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.create_object_store(self.bucket, storage=api.StorageType.FILE)

    async def drop(self) -> None:
        """Delete the whole store (tests and benchmarks)."""
        with contextlib.suppress(NotFoundError):
            await self.js.delete_object_store(self.bucket)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def put_file(self, name: str, path: str | os.PathLike, *, new: bool = False
                       ) -> ObjectInfo:
        """Store the file's content as `name`, replacing an older object of that name (`new`:
        the caller knows there is none, which saves a round trip)."""
        old = None if new else await self.info(name)
        nuid = self.nc._nuid.next().decode()
        subject = self._chunks(nuid)
        h = hashlib.sha256()
        size = chunks = 0
        acks: deque[asyncio.Future] = deque()
        f = await self._run(open, path, "rb")
        try:
            while True:
                data = await self._run(_read_hash, f, h)
                if not data:
                    break
                acks.append(await self.js.publish_async(subject, data))
                size += len(data)
                chunks += 1
                if len(acks) >= WINDOW:
                    await acks.popleft()
            while acks:
                await acks.popleft()
            info = ObjectInfo(name, size, h.digest(), nuid, chunks)
            await self.js.publish(self._meta(name), _meta_json(self.bucket, info), headers=ROLLUP)
        except BaseException:
            for fut in acks:
                fut.cancel()
            await asyncio.shield(self._purge(subject))
            raise
        finally:
            await self._run(f.close)
        if old is not None:
            await self._purge(self._chunks(old.nuid))
        return info

    async def _purge(self, subject: str) -> None:
        # cleanup of an abandoned write: whatever stays is garbage no meta message points at
        with contextlib.suppress(Exception):
            await self.js.purge_stream(self.stream, subject=subject)

    async def info(self, name: str) -> ObjectInfo | None:
        """The object's meta (None if there is none or it was deleted)."""
        try:
            msg = await self.js.get_last_msg(self.stream, self._meta(name))
        except NotFoundError:
            return None
        meta = json.loads(msg.data or b"{}")
        if meta.get("deleted"):
            return None
        digest = meta.get("digest", "").split("=", 1)[-1]
        return ObjectInfo(name, int(meta.get("size", 0)),
                          base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)),
                          meta["nuid"], int(meta.get("chunks", 0)))

    async def get_file(self, name: str, fd: int) -> ObjectInfo:
        """Write the object into the open file `fd` (from its current offset); ObjectMissing
        if there is none, ObjectCorrupt if what arrived is not what was stored."""
        info = await self.info(name)
        if info is None:
            raise ObjectMissing(name)
        h = hashlib.sha256()
        size = 0
        if info.chunks == 1:  # one message: a direct read, no consumer
            msg = await self.js.get_last_msg(self.stream, self._chunks(info.nuid))
            size = len(msg.data or b"")
            await self._run(_write_hash, fd, [msg.data or b""], h)
        elif info.size:
            # an ephemeral pull consumer, fetched in batches (the next one while the last is
            # written): ~8x faster here than nats-py's ordered push consumer, whose flow
            # control stops the stream every few messages
            sub = await self.js.pull_subscribe(
                self._chunks(info.nuid), stream=self.stream, config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL,
                    inactive_threshold=FETCH_TIMEOUT_S * 2))
            try:
                last = False
                fetch = asyncio.ensure_future(sub.fetch(WINDOW, timeout=FETCH_TIMEOUT_S))
                while not last:
                    try:
                        msgs = await fetch
                    except TimeoutError:  # nats-py's TimeoutError is one too
                        raise ObjectCorrupt(f"object {name}: chunks missing after {size} "
                                            "bytes") from None
                    buf = [m.data for m in msgs]
                    size += sum(map(len, buf))
                    last = msgs[-1].metadata.num_pending == 0 or size >= info.size
                    if not last:
                        fetch = asyncio.ensure_future(sub.fetch(WINDOW,
                                                                timeout=FETCH_TIMEOUT_S))
                    try:
                        await self._run(_write_hash, fd, buf, h)
                    except BaseException:
                        if not last:
                            fetch.cancel()
                        raise
            finally:
                await sub.unsubscribe()
        if size != info.size or h.digest() != info.sha256:
            raise ObjectCorrupt(f"object {name}: {size} bytes read, {info.size} stored, "
                                "or its SHA-256 differs")
        return info

    async def delete(self, name: str) -> None:
        """Delete the object (a deleted meta message, then its chunks); no error if absent."""
        info = await self.info(name)
        if info is None:
            return
        gone = {"name": name, "bucket": self.bucket, "nuid": info.nuid, "size": 0, "chunks": 0,
                "digest": "", "mtime": "", "deleted": True}
        await self.js.publish(self._meta(name), json.dumps(gone).encode(), headers=ROLLUP)
        await self._purge(self._chunks(info.nuid))

    def name_of(self, meta_subject: str) -> str:
        """The object name a meta subject stands for."""
        enc = meta_subject.rsplit(".", 1)[-1]
        return base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4)).decode()

    @property
    def meta_subjects(self) -> str:
        return f"$O.{self.bucket}.M.>"


def _meta_json(bucket: str, info: ObjectInfo) -> bytes:
    digest = base64.urlsafe_b64encode(info.sha256).decode()
    return json.dumps({"name": info.name, "bucket": bucket, "nuid": info.nuid,
                       "size": info.size, "chunks": info.chunks,
                       "mtime": datetime.now(UTC).isoformat(), "digest": f"SHA-256={digest}",
                       "options": {"max_chunk_size": CHUNK}}).encode()


def _read_hash(f: BinaryIO, h: Any) -> bytes:
    data = f.read(CHUNK)
    h.update(data)
    return data


def _write_hash(fd: int, parts: list[bytes], h: Any) -> None:
    for part in parts:
        h.update(part)
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view):]
