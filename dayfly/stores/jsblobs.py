"""Blobs shared by every node: content in a JetStream object store (`{cluster}_objects`), local
files as a read cache, the same interface as blobs.BlobStore.

1. Writes go to a local file first (as on one node: temp file, rename; no fsync, the copy that
   counts is JetStream's), then to the object store; `write`, `write_fd`, `concat`,
   `copy_range`, `link` and a writer's `finish` return only once JetStream acknowledged every
   chunk, so an acknowledged PUT survives the node. The local file stays as the first cache
   entry (checked like any other after a restart, see 3).
2. Reads (`open`, `local`) serve the local copy; a node without one fetches the object once
   (concurrent reads share the fetch) into a temp file, checks its size and SHA-256, and
   renames it into place (no fsync: see 3). Ranges are read from the local copy.
3. A local copy is trusted only while its inode, size, mtime and ctime are those it had when
   it was written or checked; any other copy (after a restart, or changed on disk) is hashed
   against the object store's SHA-256 first, and fetched anew if it differs.
4. `remove` deletes the object from the store and the local copy; every node drops its own
   copy when it sees the object's deleted meta message (a core subscription: a node offline
   meanwhile keeps its copy until `sweep` at its next start).
5. `sweep` acts on this node's cache only; objects left in the shared store by a crash
   between write and commit are not collected yet (see docs: cluster).

`link`, `remove` and a writer's `finish` are blocking calls made from worker threads (as
for the file store): they hand their network part to the event loop and wait for it; file
work of this module runs on its own small thread pool, so those waiting threads can never
starve it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg

from .blobs import Blob, BlobStore, Buffer, Transform, _Writer, open_range
from .jsobjects import ObjectMissing, Objects
from .s3errors import S3Error

log = logging.getLogger("dayfly.blobs")
T = TypeVar("T")
_ID = re.compile(r"^[0-9a-f]{32}$")  # blob ids: uuid4 hex; anything else is not ours
Stamp = tuple[int, int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1024 * 1024):
            h.update(data)
    return h.digest()


class _SharedWriter(_Writer):
    """A writer whose `finish` (in a worker thread) also stores the blob in the shared store."""

    store: JetStreamBlobStore

    def finish(self) -> Blob:
        blob = super().finish()
        self.store.wait(self.store.share(blob.id))
        return blob


class JetStreamBlobStore(BlobStore):
    """Blobs in the JetStream object store `bucket`, cached under `root` (see module docstring).
    `await start()` before use."""

    fsync = False  # local files are a cache: the durable copy is in JetStream

    def __init__(self, root: Path, nc: Client, bucket: str) -> None:
        super().__init__(root)
        self.io = ThreadPoolExecutor(4, thread_name_prefix="dayfly-blobs")
        self.objects = Objects(nc, bucket, self.io)
        self.loop: asyncio.AbstractEventLoop | None = None  # set by start
        self._loop_thread = -1
        # the fields below are touched on the event loop only
        self._checked: dict[str, Stamp] = {}  # blob id -> stamp of a local copy known good
        self._fetching: dict[str, asyncio.Future[Path]] = {}
        self.fetches = 0  # objects fetched from the shared store (tests, metrics)
        self._sub: Any = None

    async def start(self) -> None:
        """Create the object store if needed; drop local copies of objects deleted anywhere."""
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self.objects.create()
        self._sub = await self.objects.nc.subscribe(self.objects.meta_subjects,
                                                    cb=self._on_meta)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        self.io.shutdown(wait=False)

    async def _on_meta(self, msg: Msg) -> None:
        try:  # whoever can publish on the subject: anything that is not ours is ignored
            name = self.objects.name_of(msg.subject)
            meta = json.loads(msg.data)
        except ValueError:  # bad base64, UTF-8 or JSON
            return
        if _ID.match(name) and isinstance(meta, dict) and meta.get("deleted"):
            self._checked.pop(name, None)
            await self._io(BlobStore.remove, self, name)

    async def _io(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        """From a worker thread: run `coro` on the event loop and wait for its result."""
        if self.loop is None or threading.get_ident() == self._loop_thread:
            coro.close()
            raise RuntimeError("a blocking blob call was made on the event loop, or before start")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    # -- writes -------------------------------------------------------------------------------

    async def share(self, blob_id: str) -> None:
        """Store the local blob in the shared store; on failure the local file goes too."""
        path = self.path(blob_id)
        try:
            await self.objects.put_file(blob_id, path, new=True)
        except BaseException as exc:
            await asyncio.shield(self._io(BlobStore.remove, self, blob_id))
            if isinstance(exc, Exception):
                log.warning("storing blob %s in the shared store failed: %s", blob_id, exc)
                raise S3Error("InternalError", "the object could not be stored; try again"
                              ) from None
            raise
        stamp = await self._io(_stamp, path)
        if stamp is not None:
            self._checked[blob_id] = stamp

    def writer(self, algorithms: Iterable[str] = ()) -> _Writer:
        return _SharedWriter(self, algorithms)

    async def write(self, chunks: AsyncIterable[Buffer], *, limit: int,
                    algorithms: Iterable[str] = (),
                    encrypt: Transform | None = None) -> Blob:
        blob = await super().write(chunks, limit=limit, algorithms=algorithms, encrypt=encrypt)
        await self.share(blob.id)
        return blob

    async def write_fd(self, fd: int, size: int, *, limit: int,
                       algorithms: Iterable[str] = ()) -> Blob:
        blob = await super().write_fd(fd, size, limit=limit, algorithms=algorithms)
        await self.share(blob.id)
        return blob

    def link(self, blob_id: str) -> str:
        """A new blob with the same content (a new object: objects are not reference-counted)."""
        return self.wait(self._link(blob_id))

    async def _link(self, blob_id: str) -> str:
        src = await self.local(blob_id)
        new = uuid.uuid4().hex
        final = self.path(new)
        final.parent.mkdir(exist_ok=True)
        await self._io(os.link, src, final)
        await self.share(new)
        stamp = await self._io(_stamp, src)  # the link changed the source's ctime
        if stamp is not None:
            self._checked[blob_id] = stamp
        return new

    def remove(self, *blob_ids: str) -> None:
        super().remove(*blob_ids)
        self.wait(self._delete(blob_ids))

    async def _delete(self, blob_ids: Iterable[str]) -> None:
        for blob_id in blob_ids:
            self._checked.pop(blob_id, None)
            await self.objects.delete(blob_id)

    # -- reads --------------------------------------------------------------------------------

    async def open(self, blob_id: str, start: int = 0, end: int | None = None
                   ) -> AsyncIterator[bytes]:
        path = await self.local(blob_id)
        return await open_range(path, start, end)

    async def local(self, blob_id: str) -> Path:
        """The path of a checked local copy of the blob (fetched now if need be);
        FileNotFoundError if the shared store has no such blob."""
        path = self.path(blob_id)
        stamp = _stamp(path)  # one stat on the loop: cheaper than a hop to a thread
        if stamp is not None and self._checked.get(blob_id) == stamp:
            return path
        running = self._fetching.get(blob_id)
        if running is None:
            running = self._fetching[blob_id] = asyncio.ensure_future(self._materialise(blob_id))
            running.add_done_callback(lambda _: self._fetching.pop(blob_id, None))
        return await asyncio.shield(running)

    async def _materialise(self, blob_id: str) -> Path:
        path = self.path(blob_id)
        info = await self.objects.info(blob_id)
        if info is None:  # deleted (a copy left here goes at the next sweep), or never shared
            raise FileNotFoundError(blob_id)
        if await self._io(_stamp, path) is not None:  # a copy never checked, or changed since
            if await self._io(_sha256_file, path) == info.sha256:
                self._checked[blob_id] = await self._io(_stamp, path)
                return path
            log.warning("the local copy of blob %s does not match the shared store: fetching it "
                        "again", blob_id)
        # a cache copy needs no fsync: after a crash it is checked against the store before use
        tmp = self.tmp / f"fetch-{blob_id}-{uuid.uuid4().hex[:8]}"
        fd = await self._io(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                await self.objects.get_file(blob_id, fd)
            except ObjectMissing:
                raise FileNotFoundError(blob_id) from None
        except BaseException:
            await asyncio.shield(self._io(_unlink, tmp))
            raise
        finally:
            await self._io(os.close, fd)
        path.parent.mkdir(exist_ok=True)
        await self._io(os.rename, tmp, path)
        self.fetches += 1
        stamp = await self._io(_stamp, path)
        if stamp is not None:
            self._checked[blob_id] = stamp
        return path


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
