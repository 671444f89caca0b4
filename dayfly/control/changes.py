"""Change notices between nodes: every store that mirrors the database in memory announces its
writes (`announced`) and re-reads what another node wrote (its `listen(on_change)` registers
its handlers; the platform hands every such store to `follow` once, after loading them).

A notice carries only a topic and a key; the handler re-reads that entity from the database
(or everything, on None: notices may have been missed), so notices that arrive late, twice or
out of order still leave memory equal to the database. On SQLite both halves are no-ops.

Topics (one per kind of mirrored row; the key names the row):
  function        function name (its versions, aliases and reserved concurrency with it)
  secret          secret name
  access_key      access key id
  api_token       token id
  event_config    function name (all its qualifiers' async settings)
  ingest_source   source name
  notification    "source/bucket", or "source" for all of a source's buckets
  event_source_mapping  mapping UUID
  schedule        schedule id
  layer           layer name (its versions; control/layers.py)
  bucket_access   S3 bucket name: owner, ACL, policy, CORS rules, public access block
  object_acl      "bucket/key" (a non-private object ACL), or "bucket/" for all of a bucket's
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol, TypeVar

from ..stores.db import ChangeCallback, Database

T = TypeVar("T")
log = logging.getLogger("dayfly.changes")
OnChange = Callable[[str, ChangeCallback], None]  # Database.on_change's shape


class Listener(Protocol):
    def listen(self, on_change: OnChange) -> None: ...


async def follow(db: Database, stores: Iterable[Listener]) -> None:
    """Have `stores` (loaded already) take other nodes' changes from now on: register their
    handlers, open the LISTEN connection, then have each handler re-read everything once, for
    what changed between the stores' loading and the LISTEN. A no-op on SQLite."""
    handlers: list[ChangeCallback] = []

    def register(topic: str, callback: ChangeCallback) -> None:
        handlers.append(callback)
        db.on_change(topic, callback)
    for store in stores:
        store.listen(register)
    await db.start_listening()
    if type(db).start_listening is Database.start_listening:
        return  # one node: nothing can have changed elsewhere
    for callback in handlers:
        out = callback(None)
        if out is not None:
            await out


def announced(db: Database, topic: str, key: str,
              fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """`fn`, followed in its transaction by the notice that `key` of `topic` changed."""
    def write(conn: sqlite3.Connection) -> T:
        out = fn(conn)
        db.changed(conn, topic, key)
        return out
    return write


class Background:
    """Reloads that may wait on a lock a local write holds for long (a deploy installing
    dependencies), run as tasks: the LISTEN connection delivers notices one at a time, and the
    other entities' notices must not wait for that one."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reloading a change from another node failed", exc_info=task.exception())

    async def settled(self) -> None:
        """Wait until every reload started so far (and any they started) has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
