"""The built-in object store: buckets and objects (metadata in SQLite, content in blob files).

Order of writes, so a crash never leaves metadata pointing at missing content:
  1. content goes to a temp file, is fsynced and renamed to its blob id (blobs.py);
  2. the metadata row is committed (one transaction);
  3. `on_event` is awaited, and the answer given; the replaced blob, if any, is removed
     meanwhile, in the background (`remove_later`).
Deletes go the other way: metadata first, then the file. Blobs left over by a crash between
1 and 2 (or a stop before a removal) are swept at start.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import orjson

from .blobs import Blob, BlobStore, Buffer, Transform
from .db import Database
from .listing import Listing, VersionListing, scan, scan_versions
from .s3errors import S3Error

log = logging.getLogger("dayfly.s3")
MAX_PUT = 5 * 1024**3  # S3's single PUT (and part) limit
MAX_KEY = 1024  # bytes of UTF-8

# s3_objects holds each key's current version (an object or a delete marker), s3_versions the
# older ones of versioned buckets; `seq` orders a key's versions (newest highest)
SCHEMA = """
CREATE TABLE IF NOT EXISTS s3_buckets (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS s3_objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, md5 TEXT NOT NULL, modified REAL NOT NULL, headers TEXT NOT NULL,
    checksum TEXT, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS s3_versions (
    bucket TEXT NOT NULL, key TEXT NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, md5 TEXT NOT NULL, modified REAL NOT NULL, headers TEXT NOT NULL,
    checksum TEXT, version TEXT NOT NULL, marker INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (bucket, key, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS s3_uploads (
    id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, headers TEXT NOT NULL,
    checksum TEXT, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS s3_uploads_by_key ON s3_uploads(bucket, key, created);
CREATE TABLE IF NOT EXISTS s3_parts (
    upload TEXT NOT NULL, number INTEGER NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL,
    md5 TEXT NOT NULL, checksums TEXT NOT NULL, modified REAL NOT NULL,
    PRIMARY KEY (upload, number)) WITHOUT ROWID
"""

# columns added after the tables first shipped (an older data dir gets them at start)
_ADDED = (("s3_buckets", "versioning", "TEXT NOT NULL DEFAULT ''"),
          ("s3_buckets", "location", "TEXT NOT NULL DEFAULT ''"),
          ("s3_objects", "version", "TEXT NOT NULL DEFAULT 'null'"),
          ("s3_objects", "marker", "INTEGER NOT NULL DEFAULT 0"),
          ("s3_objects", "seq", "INTEGER NOT NULL DEFAULT 0"),
          ("s3_objects", "parts", "TEXT"),
          ("s3_versions", "parts", "TEXT"))
COLUMNS = ("bucket, key, blob, size, etag, md5, modified, headers, checksum, version, marker, "
           "seq, parts")
_VALUES = "(" + ", ".join("?" * 13) + ")"
_VERSION_RE = re.compile(r"^[0-9a-f]{32}$")
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
    version: str = "null"  # the version id; "null" in unversioned (or suspended) buckets
    marker: bool = False  # a delete marker (no content)
    seq: int = 0  # orders a key's versions
    # a multipart object's parts: {"upload": id, "sizes": [...], "checksums": [{alg: b64}]}
    parts: dict[str, Any] | None = None
    # not stored: the bucket's versioning state when a null version was read (get_object; ''
    # otherwise): S3 names a null version in the answer only in a bucket with versioning
    versioning: str = ""

    @classmethod
    def of(cls, row: sqlite3.Row) -> ObjectInfo:
        return cls(row["bucket"], row["key"], row["blob"], row["size"], row["etag"], row["md5"],
                   row["modified"], orjson.loads(row["headers"]),
                   orjson.loads(row["checksum"]) if row["checksum"] else None,
                   row["version"], bool(row["marker"]), row["seq"],
                   orjson.loads(row["parts"]) if row["parts"] else None)

    def part_range(self, number: int) -> tuple[int, int]:
        """(first, last) byte of part `number` (a single-part object has part 1 only)."""
        sizes = self.parts["sizes"] if self.parts else [self.size]
        if not 1 <= number <= len(sizes):
            raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable",
                          PartNumberRequested=str(number), ActualPartCount=str(len(sizes)))
        start = sum(sizes[:number - 1])
        return start, start + sizes[number - 1] - 1

    def values(self) -> tuple[Any, ...]:
        """The row's values in COLUMNS order."""
        return (self.bucket, self.key, self.blob, self.size, self.etag, self.md5, self.modified,
                orjson.dumps(self.headers).decode(),
                orjson.dumps(self.checksum).decode() if self.checksum else None,
                self.version, int(self.marker), self.seq,
                orjson.dumps(self.parts).decode() if self.parts else None)


@dataclass(frozen=True, slots=True)
class Deleted:
    """What one delete did: the version removed, or the delete marker it created."""

    key: str
    version: str = "null"  # the version removed, or the new marker's
    marker: bool = False  # the removed version was a marker, or a marker was created
    created: bool = False  # a delete marker was created (no version id given)
    removed: bool = True  # something existed (events are sent only then)


def check_version_id(version: str) -> None:
    if version != "null" and not _VERSION_RE.match(version):
        raise S3Error("InvalidArgument", "Invalid version id specified",
                      ArgumentName="versionId", ArgumentValue=version[:64])


def no_version(key: str, version: str) -> S3Error:
    return S3Error("NoSuchVersion", "The specified version does not exist.", Key=key,
                   VersionId=version)


class _Sequencer:
    """Increasing hex sequencers (S3 compares them as equal-length strings)."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> str:
        self.last = max(self.last + 1, time.time_ns())
        return f"{self.last:018X}"


class _Counter:
    """Increasing integers from the clock (nanoseconds), for ordering a key's versions."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last = max(self.last + 1, time.time_ns())
        return self.last


class ObjectStore:
    """Buckets and objects of one node; `on_event` hears every change (see module docstring)."""

    def __init__(self, db: Database, data_dir: Path, region: str) -> None:
        self.db = db
        self.region = region
        self.blobs = BlobStore(data_dir / "objects")
        self.on_event: Callable[[dict], Awaitable[None]] | None = None
        self.sse_key: bytes | None = None  # SSE-S3's key (sse.node_key), set by the platform
        self._removing: set[asyncio.Task[None]] = set()  # remove_later's, until done
        self._seq = _Sequencer()
        self._versions = _Counter()
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
        for table, column, decl in _ADDED:
            have = {d[0] for d in c.execute(f"SELECT * FROM {table} LIMIT 0").description}
            if column not in have:
                c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        referenced = {r[0] for r in c.execute("SELECT blob FROM s3_objects UNION ALL "
                                              "SELECT blob FROM s3_versions UNION ALL "
                                              "SELECT blob FROM s3_parts")}
        self.blobs.sweep(referenced)

    def new_version(self, versioning: str) -> tuple[str, int]:
        """(version id, seq) of a new version in a bucket of that versioning state."""
        seq = self._versions.next()
        if versioning != "Enabled":
            return "null", seq
        return f"{seq:016x}{secrets.token_hex(8)}", seq

    # buckets

    async def create_bucket(self, name: str, location: str = "") -> None:
        check_bucket_name(name)

        def create(c: sqlite3.Connection) -> None:
            # one statement: two nodes creating the same bucket at once cannot both succeed
            if not c.execute("INSERT INTO s3_buckets(name, created, location) VALUES (?, ?, ?) "
                             "ON CONFLICT(name) DO NOTHING",
                             (name, time.time(), location)).rowcount:
                raise S3Error("BucketAlreadyOwnedByYou", "Your previous request to create the "
                              "named bucket succeeded and you already own it.", BucketName=name)
        await self.db.run(create)

    async def delete_bucket(self, name: str) -> None:
        def delete(c: sqlite3.Connection) -> list[str]:
            _bucket(c, name)
            if (c.execute("SELECT 1 FROM s3_objects WHERE bucket = ? LIMIT 1", (name,)).fetchone()
                    or c.execute("SELECT 1 FROM s3_versions WHERE bucket = ? LIMIT 1",
                                 (name,)).fetchone()):
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

    async def list_buckets(self, after: str = "", prefix: str = "") -> list[tuple[str, float]]:
        """(name, created) of the buckets named after `after` and starting with `prefix`."""
        rows = await self.db.run(lambda c: [(r[0], r[1]) for r in c.execute(
            "SELECT name, created FROM s3_buckets WHERE name > ? ORDER BY name", (after,))])
        return [r for r in rows if r[0].startswith(prefix)]

    async def bucket_settings(self, name: str) -> tuple[str, str]:
        """(versioning state: '', 'Enabled' or 'Suspended'; LocationConstraint)."""
        def get(c: sqlite3.Connection) -> tuple[str, str]:
            row = c.execute("SELECT versioning, location FROM s3_buckets WHERE name = ?",
                            (name,)).fetchone()
            if row is None:
                raise _no_bucket(name)
            return row[0], row[1]
        return await self.db.run(get)

    async def set_versioning(self, name: str, state: str) -> None:
        """'Enabled' or 'Suspended' (a versioned bucket never becomes unversioned again)."""
        def put(c: sqlite3.Connection) -> None:
            if not c.execute("UPDATE s3_buckets SET versioning = ? WHERE name = ?",
                             (state, name)).rowcount:
                raise _no_bucket(name)
        await self.db.run(put)

    # objects

    async def put_object(self, bucket: str, key: str, body: AsyncIterable[Buffer], *,
                         headers: dict[str, str], algorithms: Iterable[str] = (),
                         verify: Callable[[Blob], dict[str, str] | None] | None = None,
                         origin: Origin | None = None, if_match: str | None = None,
                         if_none_match: bool = False,
                         encrypt: Transform | None = None) -> ObjectInfo:
        """Store a body; `verify(blob)` may refuse it (raise) or name its checksum to keep;
        `encrypt` (sse.py) is applied to what is stored, after hashing."""
        check_key(key)
        await self.head_bucket(bucket)
        blob = await self.blobs.write(body, limit=MAX_PUT, algorithms=algorithms,
                                      encrypt=encrypt)
        return await self.put_blob(bucket, key, blob, headers=headers, verify=verify,
                                   origin=origin, if_match=if_match, if_none_match=if_none_match)

    async def put_blob(self, bucket: str, key: str, blob: Blob, *, headers: dict[str, str],
                       verify: Callable[[Blob], dict[str, str] | None] | None = None,
                       origin: Origin | None = None, if_match: str | None = None,
                       if_none_match: bool = False) -> ObjectInfo:
        """Make a written blob the object `bucket/key`, as PutObject does (commit, then the
        event); the blob is removed if that fails."""
        try:
            checksum = verify(blob) if verify is not None else None
            md5 = blob.md5.hex()
            # an SSE-C object's ETag is not its MD5 (which would tell of content only the
            # key's holder may read), as in S3
            etag = secrets.token_hex(16) if "x-dayfly-sse-check" in headers else md5
            info = ObjectInfo(bucket, key, blob.id, blob.size, etag, md5, time.time(), headers,
                              checksum)
            await self.commit(info, if_match=if_match, if_none_match=if_none_match)
        except BaseException:
            await self.remove_blobs([blob.id])
            raise
        await self.emit("ObjectCreated:Put", info, origin)
        return info

    async def commit(self, info: ObjectInfo, extra: Callable[[sqlite3.Connection], Any]
                     | None = None, *, if_match: str | None = None,
                     if_none_match: bool = False) -> None:
        """Make `info` the key's current version (and run `extra` in the same transaction):
        the version it replaces is kept (versioned bucket) or its blob removed. `info.version`
        and `info.seq` are set here. `if_match` (an ETag) and `if_none_match` (no object)
        are checked by the statements that replace the row, so two writers cannot both pass."""
        def write(c: sqlite3.Connection) -> list[str]:
            versioning = _versioning(c, info.bucket)
            info.version, info.seq = self.new_version(versioning)
            gone = self._supersede(c, info, versioning, if_match, if_none_match)
            if extra is not None:
                extra(c)
            return gone
        gone = await self.db.run(write)
        self.remove_later([b for b in gone if b != info.blob])

    def _supersede(self, c: sqlite3.Connection, info: ObjectInfo, versioning: str,
                   if_match: str | None, if_none_match: bool) -> list[str]:
        """Replace the key's current row by `info`'s; the blobs no version refers to any more."""
        gone: list[str] = []
        for _ in range(5):  # another node may insert the key between the delete and the insert
            cond, args = "", [info.bucket, info.key]
            if if_match is not None:
                cond, args = " AND marker = 0 AND etag = ?", [*args, if_match]
            elif if_none_match:
                cond = " AND marker = 1"  # only a delete marker may be replaced
            row = c.execute(f"DELETE FROM s3_objects WHERE bucket = ? AND key = ?{cond} "
                            f"RETURNING {COLUMNS}", args).fetchone()
            if row is None and if_match is not None:
                if c.execute("SELECT 1 FROM s3_objects WHERE bucket = ? AND key = ? AND "
                             "marker = 0", (info.bucket, info.key)).fetchone():
                    raise precondition_failed("If-Match")
                raise S3Error("NoSuchKey", "The specified key does not exist.", Key=info.key)
            if row is not None:
                old = ObjectInfo.of(row)
                if versioning == "Enabled" or (versioning and old.version != "null"):
                    c.execute(f"INSERT INTO s3_versions ({COLUMNS}) VALUES {_VALUES}",
                              old.values())
                elif not old.marker:
                    gone.append(old.blob)
            if versioning == "Suspended":  # the new null version replaces the old one
                gone += [r[0] for r in c.execute(
                    "DELETE FROM s3_versions WHERE bucket = ? AND key = ? AND version = 'null' "
                    "RETURNING blob, marker", (info.bucket, info.key)) if not r[1]]
            if c.execute(f"INSERT INTO s3_objects ({COLUMNS}) VALUES {_VALUES} "
                         "ON CONFLICT(bucket, key) DO NOTHING", info.values()).rowcount:
                return gone
            if if_match is not None or if_none_match:
                raise precondition_failed("If-Match" if if_match else "If-None-Match")
        raise S3Error("InternalError", "The key kept changing; please try again.")

    async def get_object(self, bucket: str, key: str, version: str | None = None) -> ObjectInfo:
        """The current version (NoSuchKey if it is a delete marker, with the marker's headers)
        or the version named (NoSuchVersion; MethodNotAllowed for a delete marker)."""
        def get(c: sqlite3.Connection) -> ObjectInfo:
            if version is None:
                row = c.execute("SELECT * FROM s3_objects WHERE bucket = ? AND key = ?",
                                (bucket, key)).fetchone()
            else:
                check_version_id(version)
                row = (c.execute("SELECT * FROM s3_objects WHERE bucket = ? AND key = ? AND "
                                 "version = ?", (bucket, key, version)).fetchone()
                       or c.execute("SELECT * FROM s3_versions WHERE bucket = ? AND key = ? AND "
                                    "version = ?", (bucket, key, version)).fetchone())
            if row is None:
                _bucket(c, bucket)
                if version is not None:
                    raise no_version(key, version)
                raise S3Error("NoSuchKey", "The specified key does not exist.", Key=key)
            info = ObjectInfo.of(row)
            if info.marker:
                if version is None:
                    exc = S3Error("NoSuchKey", "The specified key does not exist.", Key=key)
                else:
                    exc = S3Error("MethodNotAllowed", "The specified method is not allowed "
                                  "against this resource.", Method="GET", ResourceType="DeleteMarker")
                exc.headers.update(marker_headers(info))
                raise exc
            if info.version == "null":
                info.versioning = _versioning(c, bucket)
            return info
        return await self.db.run(get)

    async def copy_object(self, src: ObjectInfo, bucket: str, key: str,
                          headers: dict[str, str] | None, origin: Origin | None = None,
                          encrypt: Transform | None = None) -> ObjectInfo:
        """A new object with `src`'s content; `headers` None keeps src's (directive COPY).
        `encrypt` (an unencrypted source, SSE asked for): the copy is written through it,
        else it is a link to the same blob."""
        check_key(key)
        await self.head_bucket(bucket)
        try:
            if encrypt is None:
                blob = await asyncio.to_thread(self.blobs.link, src.blob)
            else:
                blob = (await self.blobs.copy_range(src.blob, 0, src.size - 1,
                                                    encrypt=encrypt)).id
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

    async def delete_objects(self, bucket: str, keys: Sequence[str | tuple[str, str | None]],
                             origin: Origin | None = None) -> list[Deleted]:
        """Delete keys, or (key, version id) pairs (missing ones are not an error, as in S3):
        in a versioned bucket a key without a version gets a delete marker. One event per
        change."""
        targets = list(dict.fromkeys(k if isinstance(k, tuple) else (k, None) for k in keys))

        def delete(c: sqlite3.Connection) -> tuple[list[Deleted], list[str]]:
            versioning = _versioning(c, bucket)
            done, gone = [], []
            for key, version in targets:
                if version is not None:
                    d, blob = _delete_version(c, bucket, key, version)
                    done.append(d)
                    gone += [blob] if blob else []
                elif not versioning:
                    row = c.execute("DELETE FROM s3_objects WHERE bucket = ? AND key = ? "
                                    "RETURNING blob", (bucket, key)).fetchone()
                    done.append(Deleted(key, removed=row is not None))
                    gone += [row[0]] if row is not None else []
                else:
                    v, seq = self.new_version(versioning)
                    info = ObjectInfo(bucket, key, "", 0, "", "", time.time(), {}, None, v,
                                      True, seq)
                    gone += self._supersede(c, info, versioning, None, False)
                    done.append(Deleted(key, v, marker=True, created=True))
            return done, gone
        done, gone = await self.db.run(delete)
        self.remove_later(gone)
        for d in done:
            if d.removed:
                name = "ObjectRemoved:DeleteMarkerCreated" if d.created else "ObjectRemoved:Delete"
                await self.emit(name, ObjectInfo(bucket, d.key, "", 0, "", "", 0,
                                                 version=d.version, marker=d.marker), origin)
        return done

    async def list_versions(self, bucket: str, **kw: Any) -> VersionListing:
        """A page of versions and common prefixes (see listing.scan_versions)."""
        def run(c: sqlite3.Connection) -> VersionListing:
            _bucket(c, bucket)
            return scan_versions(c, bucket, **kw)
        return await self.db.run(run)

    async def list_objects(self, bucket: str, **kw: Any) -> Listing:
        """A page of keys and common prefixes (see listing.scan for the arguments)."""
        def run(c: sqlite3.Connection) -> Listing:
            _bucket(c, bucket)
            return scan(c, bucket, **kw)
        return await self.db.run(run)

    async def remove_blobs(self, blob_ids: list[str]) -> None:
        if blob_ids:
            await asyncio.to_thread(self.blobs.remove, *blob_ids)

    def remove_later(self, blob_ids: list[str]) -> None:
        """Remove blobs no version refers to any more after the answer, not before it (the
        unlink of a 256 MiB file took 60 ms); one a stop leaves behind is swept at the next
        start."""
        if blob_ids:
            task = asyncio.ensure_future(self.remove_blobs(blob_ids))
            self._removing.add(task)
            task.add_done_callback(self._removed)

    async def removals(self) -> None:
        """Wait until the removals begun so far are done (tests, and a clean stop)."""
        while self._removing:
            await asyncio.gather(*self._removing, return_exceptions=True)

    def _removed(self, task: asyncio.Task[None]) -> None:
        self._removing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("removing replaced blobs failed (the next start sweeps them): %s",
                        task.exception())

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
        if info.version != "null":
            obj["versionId"] = info.version
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


def precondition_failed(condition: str) -> S3Error:
    return S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did "
                   "not hold", Condition=condition)


def marker_headers(info: ObjectInfo) -> dict[str, str]:
    return {"x-amz-delete-marker": "true", "x-amz-version-id": info.version,
            "last-modified": formatdate(info.modified, usegmt=True)}


def _no_bucket(name: str) -> S3Error:
    return S3Error("NoSuchBucket", "The specified bucket does not exist", BucketName=name)


def _bucket(c: sqlite3.Connection, name: str) -> float:
    row = c.execute("SELECT created FROM s3_buckets WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise _no_bucket(name)
    return row[0]


def _versioning(c: sqlite3.Connection, name: str) -> str:
    row = c.execute("SELECT versioning FROM s3_buckets WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise _no_bucket(name)
    return row[0]


def _delete_version(c: sqlite3.Connection, bucket: str, key: str,
                    version: str) -> tuple[Deleted, str | None]:
    """Remove one version; if it was the current one, the newest older version becomes
    current. (What was done, the blob to remove.)"""
    check_version_id(version)
    row = c.execute(f"DELETE FROM s3_objects WHERE bucket = ? AND key = ? AND version = ? "
                    f"RETURNING {COLUMNS}", (bucket, key, version)).fetchone()
    if row is not None:
        prev = c.execute(f"SELECT {COLUMNS} FROM s3_versions WHERE bucket = ? AND key = ? "
                         "ORDER BY seq DESC LIMIT 1", (bucket, key)).fetchone()
        if prev is not None:
            c.execute("DELETE FROM s3_versions WHERE bucket = ? AND key = ? AND version = ?",
                      (bucket, key, prev["version"]))
            c.execute(f"INSERT INTO s3_objects ({COLUMNS}) VALUES {_VALUES}",
                      ObjectInfo.of(prev).values())
    else:
        row = c.execute(f"DELETE FROM s3_versions WHERE bucket = ? AND key = ? AND version = ? "
                        f"RETURNING {COLUMNS}", (bucket, key, version)).fetchone()
    if row is None:
        return Deleted(key, version, removed=False), None
    info = ObjectInfo.of(row)
    return Deleted(key, version, marker=info.marker), None if info.marker else info.blob
