"""Who owns each bucket and what others may do with it: owner, canned ACL, bucket policy, CORS
rules and public access block per bucket, and the objects whose ACL is not private.

All of it is mirrored in memory (the S3 endpoint reads it on every request, never the
database) and announced to other nodes under topics `bucket_access` (key: bucket) and
`object_acl` (key: `bucket/key`). A bucket without a row belongs to the default user (buckets
made before users existed). Policies and CORS rules are kept as the validated documents the
owner sent; gateway/s3/access.py and cors.py read them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote_plus

import orjson

from ..stores.db import Database
from .changes import OnChange, announced
from .keys import DEFAULT_USER

SCHEMA = """
CREATE TABLE IF NOT EXISTS s3_bucket_access (
    bucket TEXT PRIMARY KEY, owner TEXT NOT NULL, acl TEXT NOT NULL, policy TEXT, cors TEXT,
    block TEXT);
CREATE TABLE IF NOT EXISTS s3_object_acls (
    bucket TEXT NOT NULL, key TEXT NOT NULL, acl TEXT NOT NULL, PRIMARY KEY (bucket, key))
"""
TOPIC, OBJECT_TOPIC = "bucket_access", "object_acl"
BLOCK_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                "RestrictPublicBuckets")


@dataclass(frozen=True, slots=True)
class BucketAccess:
    """One bucket's owner and access settings."""

    owner: str = DEFAULT_USER
    acl: str = "private"  # a canned ACL: private, public-read, authenticated-read
    policy: str | None = None  # the policy JSON as put (validated)
    cors: tuple[dict[str, Any], ...] | None = None  # CORS rules (cors.py's shape)
    block: dict[str, bool] | None = None  # the public access block (BLOCK_FIELDS)

    def blocks(self, field: str) -> bool:
        return bool(self.block and self.block.get(field))


DEFAULT = BucketAccess()


class AccessStore:
    """Bucket owners and settings, and non-private object ACLs, in memory and in the database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._buckets: dict[str, BucketAccess] = {}
        self._objects: dict[tuple[str, str], str] = {}  # (bucket, key) → acl, never "private"
        db.ensure(SCHEMA)
        self._buckets, self._objects = db.call(lambda c: (_buckets(c, None), _objects(c, None)))

    def listen(self, on_change: OnChange) -> None:
        """Take other nodes' bucket settings and object ACLs."""
        on_change(TOPIC, self._reload_bucket)
        on_change(OBJECT_TOPIC, self._reload_object)

    async def _reload_bucket(self, bucket: str | None) -> None:
        rows = await self.db.run(lambda c: _buckets(c, bucket))
        if bucket is None:
            self._buckets = rows
        elif bucket in rows:
            self._buckets[bucket] = rows[bucket]
        else:
            self._buckets.pop(bucket, None)

    async def _reload_object(self, name: str | None) -> None:
        where = None if name is None else tuple(name.split("/", 1))
        rows = await self.db.run(lambda c: _objects(c, where))
        if where is None:
            self._objects = rows
            return
        for gone in [k for k in self._objects
                     if k[0] == where[0] and (len(where) == 1 or where[1] in ("", k[1]))]:
            del self._objects[gone]
        self._objects.update(rows)

    def get(self, bucket: str) -> BucketAccess:
        return self._buckets.get(bucket, DEFAULT)

    def object_acl(self, bucket: str, key: str) -> str:
        return self._objects.get((bucket, key), "private")

    async def created(self, bucket: str, owner: str, acl: str) -> None:
        """A new bucket: its owner and ACL; whatever a deleted bucket of that name had is gone."""
        access = BucketAccess(owner, acl)
        await self.db.run(announced(self.db, TOPIC, bucket, lambda c: c.execute(
            "INSERT INTO s3_bucket_access(bucket, owner, acl) VALUES (?, ?, ?) "
            "ON CONFLICT(bucket) DO UPDATE SET owner = excluded.owner, acl = excluded.acl, "
            "policy = NULL, cors = NULL, block = NULL", (bucket, owner, acl))))
        self._buckets[bucket] = access

    async def forget(self, bucket: str) -> None:
        """A deleted bucket: its settings and object ACLs go."""
        def delete(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM s3_bucket_access WHERE bucket = ?", (bucket,))
            c.execute("DELETE FROM s3_object_acls WHERE bucket = ?", (bucket,))
            self.db.changed(c, OBJECT_TOPIC, bucket + "/")
        await self.db.run(announced(self.db, TOPIC, bucket, delete))
        self._buckets.pop(bucket, None)
        for name in [k for k in self._objects if k[0] == bucket]:
            del self._objects[name]

    async def update(self, bucket: str, **changes: Any) -> None:
        """Set some of acl, policy, cors, block (None removes a policy, CORS rules, a block)."""
        new = replace(self.get(bucket), **changes)
        values = (new.owner, new.acl, new.policy,
                  orjson.dumps(new.cors).decode() if new.cors is not None else None,
                  orjson.dumps(new.block).decode() if new.block is not None else None)
        await self.db.run(announced(self.db, TOPIC, bucket, lambda c: c.execute(
            "INSERT INTO s3_bucket_access(bucket, owner, acl, policy, cors, block) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(bucket) DO UPDATE SET acl = excluded.acl, "
            "policy = excluded.policy, cors = excluded.cors, block = excluded.block",
            (bucket, *values))))
        self._buckets[bucket] = new

    def following(self, on_event: Callable[[dict], Awaitable[None]]
                  ) -> Callable[[dict], Awaitable[None]]:
        """The object store's event hook: every object created or removed, however (S3, a POST
        form, a function's `context.buckets`), starts private, as S3 resets an overwritten
        object's ACL; PutObject's `x-amz-acl` is applied after (gateway/s3/routes.py). Then
        `on_event` (the bucket triggers) hears the event."""
        async def hook(record: dict) -> None:
            s3 = record.get("s3", {})
            bucket = s3.get("bucket", {}).get("name", "")
            key = unquote_plus(s3.get("object", {}).get("key", ""))
            if (bucket, key) in self._objects:
                await self.set_object_acl(bucket, key, "private")
            await on_event(record)
        return hook

    async def set_object_acl(self, bucket: str, key: str, acl: str) -> None:
        """An object's canned ACL ("private" keeps no row: every object's default)."""
        if acl == "private" and (bucket, key) not in self._objects:
            return  # the common case (every plain PUT): nothing to write

        def write(c: sqlite3.Connection) -> None:
            if acl == "private":
                c.execute("DELETE FROM s3_object_acls WHERE bucket = ? AND key = ?",
                          (bucket, key))
            else:
                c.execute("INSERT INTO s3_object_acls(bucket, key, acl) VALUES (?, ?, ?) "
                          "ON CONFLICT(bucket, key) DO UPDATE SET acl = excluded.acl",
                          (bucket, key, acl))
        await self.db.run(announced(self.db, OBJECT_TOPIC, f"{bucket}/{key}", write))
        if acl == "private":
            self._objects.pop((bucket, key), None)
        else:
            self._objects[(bucket, key)] = acl


def _buckets(c: sqlite3.Connection, bucket: str | None) -> dict[str, BucketAccess]:
    where, args = (" WHERE bucket = ?", (bucket,)) if bucket is not None else ("", ())
    return {r["bucket"]: BucketAccess(
        r["owner"], r["acl"], r["policy"],
        tuple(orjson.loads(r["cors"])) if r["cors"] else None,
        orjson.loads(r["block"]) if r["block"] else None)
        for r in c.execute("SELECT * FROM s3_bucket_access" + where, args)}


def _objects(c: sqlite3.Connection, where: tuple[str, ...] | None
             ) -> dict[tuple[str, str], str]:
    if where is None:
        rows = c.execute("SELECT bucket, key, acl FROM s3_object_acls")
    elif len(where) == 2 and where[1]:
        rows = c.execute("SELECT bucket, key, acl FROM s3_object_acls WHERE bucket = ? AND "
                         "key = ?", where)
    else:  # "bucket/": all of a bucket's
        rows = c.execute("SELECT bucket, key, acl FROM s3_object_acls WHERE bucket = ?",
                         (where[0],))
    return {(r["bucket"], r["key"]): r["acl"] for r in rows}
