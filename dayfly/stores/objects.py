"""The built-in object store: buckets and objects (metadata in SQLite, content in blob files).

Order of writes, so a crash never leaves metadata pointing at missing content:
  1. content goes to a temp file, is fsynced and renamed to its blob id (blobs.py);
  2. the metadata row is committed (one transaction);
  3. the replaced blob, if any, is removed; then `on_event` is awaited.
Deletes go the other way: metadata first, then the file. Blobs left over by a crash between
1 and 2 are swept at start.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import orjson

from .blobs import Blob, BlobStore
from .db import Database
from .listing import Listing, scan
from .s3errors import S3Error

MAX_PUT = 5 * 1024**3  # S3's single PUT (and part) limit
MAX_KEY = 1024  # bytes of UTF-8

SCHEMA = """
CREATE TABLE IF NOT EXISTS s3_buckets (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS s3_objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, md5 TEXT NOT NULL, modified REAL NOT NULL, headers TEXT NOT NULL,
    checksum TEXT, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS s3_uploads (
    id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, headers TEXT NOT NULL,
    checksum TEXT, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS s3_uploads_by_key ON s3_uploads(bucket, key, created);
CREATE TABLE IF NOT EXISTS s3_parts (
    upload TEXT NOT NULL, number INTEGER NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL,
    md5 TEXT NOT NULL, checksums TEXT NOT NULL, modified REAL NOT NULL,
    PRIMARY KEY (upload, number)) WITHOUT ROWID
"""

_OBJECT_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in (
    "blob", "size", "etag", "md5", "modified", "headers", "checksum"))
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def check_bucket_name(name: str) -> None:
    """S3's bucket naming rules (general purpose buckets)."""
    if (not _BUCKET_RE.match(name) or ".." in name or ".-" in name or "-." in name
            or _IP_RE.match(name) or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
            or name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))):
        raise S3Error("InvalidBucketName", "The specified bucket is not valid.",
                      BucketName=name[:255])


def check_key(key: str) -> None:
    """1 to 1024 bytes; no characters XML 1.0 cannot carry (they could never be listed)."""
    if not key:
        raise S3Error("InvalidArgument", "Object key must not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY:
        raise S3Error("KeyTooLongError", "Your key is too long", MaxSizeAllowed=str(MAX_KEY))
    if _XML_BAD.search(key):
        raise S3Error("InvalidArgument", "Object key contains characters XML cannot carry")


@dataclass(frozen=True, slots=True)
class Origin:
    """Who caused a change, for the event record."""

    request_id: str = ""
    source_ip: str = ""
    principal: str = ""


@dataclass(slots=True)
class ObjectInfo:
    """One object's metadata; `etag` and `md5` are hex without quotes."""

    bucket: str
    key: str
    blob: str
    size: int
    etag: str
    md5: str
    modified: float
    headers: dict[str, str] = field(default_factory=dict)  # content-type, x-amz-meta-*, ...
    checksum: dict[str, str] | None = None  # algorithm, value (base64), type

    @classmethod
    def of(cls, row: sqlite3.Row) -> ObjectInfo:
        return cls(row["bucket"], row["key"], row["blob"], row["size"], row["etag"], row["md5"],
                   row["modified"], orjson.loads(row["headers"]),
                   orjson.loads(row["checksum"]) if row["checksum"] else None)


class _Sequencer:
    """Increasing hex sequencers (S3 compares them as equal-length strings)."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> str:
        self.last = max(self.last + 1, time.time_ns())
        return f"{self.last:018X}"


class ObjectStore:
    """Buckets and objects of one node; `on_event` hears every change (see module docstring)."""

    def __init__(self, db: Database, data_dir: Path, region: str) -> None:
        self.db = db
        self.region = region
        self.blobs = BlobStore(data_dir / "objects")
        self.on_event: Callable[[dict], Awaitable[None]] | None = None
        self._seq = _Sequencer()
        self.db.call(self._init)
        from .multipart import Multipart  # one store, two halves: multipart needs _commit

        self.multipart = Multipart(self)

    def use_blobs(self, blobs: BlobStore) -> None:
        """Keep object content in `blobs` from now on (cluster mode: a shared backend, set at
        start before any request; objects stored before in single-node mode are not copied)."""
        self.blobs = self.multipart.blobs = blobs

    def _init(self, c: sqlite3.Connection) -> None:
        for stmt in SCHEMA.split(";"):
            c.execute(stmt)
        referenced = {r[0] for r in c.execute("SELECT blob FROM s3_objects UNION ALL "
                                              "SELECT blob FROM s3_parts")}
        self.blobs.sweep(referenced)

    # buckets

    async def create_bucket(self, name: str) -> None:
        check_bucket_name(name)

        def create(c: sqlite3.Connection) -> None:
            # one statement: two nodes creating the same bucket at once cannot both succeed
            if not c.execute("INSERT INTO s3_buckets(name, created) VALUES (?, ?) "
                             "ON CONFLICT(name) DO NOTHING", (name, time.time())).rowcount:
                raise S3Error("BucketAlreadyOwnedByYou", "Your previous request to create the "
                              "named bucket succeeded and you already own it.", BucketName=name)
        await self.db.run(create)

    async def delete_bucket(self, name: str) -> None:
        def delete(c: sqlite3.Connection) -> list[str]:
            _bucket(c, name)
            if c.execute("SELECT 1 FROM s3_objects WHERE bucket = ? LIMIT 1", (name,)).fetchone():
                raise S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty",
                              BucketName=name)
            uploads = [r[0] for r in c.execute("SELECT id FROM s3_uploads WHERE bucket = ?",
                                               (name,))]
            blobs = []
            for u in uploads:
                blobs += [r[0] for r in c.execute("SELECT blob FROM s3_parts WHERE upload = ?",
                                                  (u,))]
                c.execute("DELETE FROM s3_parts WHERE upload = ?", (u,))
            c.execute("DELETE FROM s3_uploads WHERE bucket = ?", (name,))
            c.execute("DELETE FROM s3_buckets WHERE name = ?", (name,))
            return blobs
        await self.remove_blobs(await self.db.run(delete))

    async def head_bucket(self, name: str) -> float:
        """The bucket's creation time; NoSuchBucket if there is none."""
        return await self.db.run(lambda c: _bucket(c, name))

    async def list_buckets(self) -> list[tuple[str, float]]:
        return await self.db.run(lambda c: [(r[0], r[1]) for r in c.execute(
            "SELECT name, created FROM s3_buckets ORDER BY name")])

    # objects

    async def put_object(self, bucket: str, key: str, body: AsyncIterable[bytes], *,
                         headers: dict[str, str], algorithms: Iterable[str] = (),
                         verify: Callable[[Blob], dict[str, str] | None] | None = None,
                         origin: Origin | None = None) -> ObjectInfo:
        """Store a body; `verify(blob)` may refuse it (raise) or name its checksum to keep."""
        check_key(key)
        await self.head_bucket(bucket)
        blob = await self.blobs.write(body, limit=MAX_PUT, algorithms=algorithms)
        return await self.put_blob(bucket, key, blob, headers=headers, verify=verify,
                                   origin=origin)

    async def put_blob(self, bucket: str, key: str, blob: Blob, *, headers: dict[str, str],
                       verify: Callable[[Blob], dict[str, str] | None] | None = None,
                       origin: Origin | None = None) -> ObjectInfo:
        """Make a written blob the object `bucket/key`, as PutObject does (commit, then the
        event); the blob is removed if that fails."""
        try:
            checksum = verify(blob) if verify is not None else None
            md5 = blob.md5.hex()
            info = ObjectInfo(bucket, key, blob.id, blob.size, md5, md5, time.time(), headers,
                              checksum)
            await self.commit(info)
        except BaseException:
            await self.remove_blobs([blob.id])
            raise
        await self.emit("ObjectCreated:Put", info, origin)
        return info

    async def commit(self, info: ObjectInfo, extra: Callable[[sqlite3.Connection], Any]
                     | None = None) -> None:
        """Write the row for `info` (and run `extra` in the same transaction); drop the old blob."""
        def write(c: sqlite3.Connection) -> str | None:
            _bucket(c, info.bucket)
            old = c.execute("SELECT blob FROM s3_objects WHERE bucket = ? AND key = ?",
                            (info.bucket, info.key)).fetchone()
            c.execute("INSERT INTO s3_objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                      f"ON CONFLICT(bucket, key) DO UPDATE SET {_OBJECT_UPDATE}",
                      (info.bucket, info.key, info.blob, info.size, info.etag, info.md5,
                       info.modified, orjson.dumps(info.headers).decode(),
                       orjson.dumps(info.checksum).decode() if info.checksum else None))
            if extra is not None:
                extra(c)
            return old[0] if old else None
        old = await self.db.run(write)
        if old is not None and old != info.blob:
            await self.remove_blobs([old])

    async def get_object(self, bucket: str, key: str) -> ObjectInfo:
        def get(c: sqlite3.Connection) -> ObjectInfo:
            row = c.execute("SELECT * FROM s3_objects WHERE bucket = ? AND key = ?",
                            (bucket, key)).fetchone()
            if row is None:
                _bucket(c, bucket)
                raise S3Error("NoSuchKey", "The specified key does not exist.", Key=key)
            return ObjectInfo.of(row)
        return await self.db.run(get)

    async def copy_object(self, src: ObjectInfo, bucket: str, key: str,
                          headers: dict[str, str] | None, origin: Origin | None = None
                          ) -> ObjectInfo:
        """A new object with `src`'s content; `headers` None keeps src's (directive COPY)."""
        check_key(key)
        await self.head_bucket(bucket)
        try:
            blob = await asyncio.to_thread(self.blobs.link, src.blob)
        except FileNotFoundError:  # deleted since it was looked up
            raise S3Error("NoSuchKey", "The specified key does not exist.", Key=src.key) from None
        keep = src.checksum if src.checksum and src.checksum["type"] == "FULL_OBJECT" else None
        # a copy is a single-part object: its ETag is the MD5 of its content
        info = ObjectInfo(bucket, key, blob, src.size, src.md5, src.md5, time.time(),
                          src.headers if headers is None else headers, keep)
        try:
            await self.commit(info)
        except BaseException:
            await self.remove_blobs([blob])
            raise
        await self.emit("ObjectCreated:Copy", info, origin)
        return info

    async def delete_objects(self, bucket: str, keys: list[str],
                             origin: Origin | None = None) -> None:
        """Delete keys (missing ones are not an error, as in S3); one event per removed object."""
        def delete(c: sqlite3.Connection) -> list[tuple[str, str]]:
            _bucket(c, bucket)
            gone = []
            for key in dict.fromkeys(keys):
                row = c.execute("DELETE FROM s3_objects WHERE bucket = ? AND key = ? "
                                "RETURNING blob", (bucket, key)).fetchone()
                if row is not None:
                    gone.append((key, row[0]))
            return gone
        gone = await self.db.run(delete)
        await self.remove_blobs([b for _, b in gone])
        for key, _ in gone:
            await self.emit("ObjectRemoved:Delete", ObjectInfo(bucket, key, "", 0, "", "", 0),
                            origin)

    async def list_objects(self, bucket: str, **kw: Any) -> Listing:
        """A page of keys and common prefixes (see listing.scan for the arguments)."""
        def run(c: sqlite3.Connection) -> Listing:
            _bucket(c, bucket)
            return scan(c, bucket, **kw)
        return await self.db.run(run)

    async def remove_blobs(self, blob_ids: list[str]) -> None:
        if blob_ids:
            await asyncio.to_thread(self.blobs.remove, *blob_ids)

    # events

    async def emit(self, name: str, info: ObjectInfo, origin: Origin | None) -> None:
        """Hand one S3 event record to `on_event` (after the commit, before the response)."""
        if self.on_event is not None:
            await self.on_event(self.event_record(name, info, origin or Origin()))

    def event_record(self, name: str, info: ObjectInfo, origin: Origin) -> dict[str, Any]:
        """One Record of an S3 event notification, as AWS shapes it."""
        obj: dict[str, Any] = {"key": quote_plus(info.key, safe="/")}
        if name.startswith("ObjectCreated"):
            obj.update(size=info.size, eTag=info.etag)
        obj["sequencer"] = self._seq.next()
        now = datetime.now(UTC)
        principal = {"principalId": origin.principal or "dayfly"}
        return {
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": self.region,
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "eventName": name, "userIdentity": principal,
            "requestParameters": {"sourceIPAddress": origin.source_ip or "127.0.0.1"},
            "responseElements": {"x-amz-request-id": origin.request_id,
                                 "x-amz-id-2": origin.request_id},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "",
                   "bucket": {"name": info.bucket, "ownerIdentity": principal,
                              "arn": f"arn:aws:s3:::{info.bucket}"},
                   "object": obj},
        }


def _bucket(c: sqlite3.Connection, name: str) -> float:
    row = c.execute("SELECT created FROM s3_buckets WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise S3Error("NoSuchBucket", "The specified bucket does not exist", BucketName=name)
    return row[0]
