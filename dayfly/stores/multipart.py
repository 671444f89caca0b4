"""Multipart uploads: parts are blobs of their own, concatenated into one blob on completion."""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import time
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from . import checksums
from .blobs import Blob, Buffer
from .listing import UploadListing, scan_uploads
from .objects import MAX_PUT, ObjectInfo, Origin, check_key
from .s3errors import S3Error

if TYPE_CHECKING:
    from .objects import ObjectStore

MIN_PART = 5 * 1024 * 1024  # every part but the last
MAX_PARTS = 10_000


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    size: int
    etag: str  # hex MD5, no quotes
    checksums: dict[str, str]  # algorithm -> base64
    modified: float
    blob: str = ""


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    bucket: str
    key: str
    headers: dict[str, str]
    checksum: dict[str, str] | None  # algorithm and type (COMPOSITE or FULL_OBJECT)
    created: float


def _no_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", "The specified upload does not exist. The upload ID may be "
                   "invalid, or the upload may have been aborted or completed.",
                   UploadId=upload_id[:200])


def _upload(c: sqlite3.Connection, bucket: str, key: str, upload_id: str) -> Upload:
    row = c.execute("SELECT * FROM s3_uploads WHERE id = ? AND bucket = ? AND key = ?",
                    (upload_id, bucket, key)).fetchone()
    if row is None:
        raise _no_upload(upload_id)
    return Upload(row["id"], row["bucket"], row["key"], orjson.loads(row["headers"]),
                  orjson.loads(row["checksum"]) if row["checksum"] else None, row["created"])


def _end_upload(c: sqlite3.Connection, bucket: str, key: str, upload_id: str) -> None:
    """Remove the upload's row, or raise NoSuchUpload: one statement, so of two nodes that
    complete or abort the same upload at once, exactly one goes on."""
    if not c.execute("DELETE FROM s3_uploads WHERE id = ? AND bucket = ? AND key = ?",
                     (upload_id, bucket, key)).rowcount:
        raise _no_upload(upload_id)


def _parts(c: sqlite3.Connection, upload_id: str, after: int = 0) -> list[Part]:
    return [Part(r["number"], r["size"], r["md5"], orjson.loads(r["checksums"]), r["modified"],
                 r["blob"])
            for r in c.execute("SELECT * FROM s3_parts WHERE upload = ? AND number > ? "
                               "ORDER BY number", (upload_id, after))]


class Multipart:
    """Create, upload part, complete, abort, list parts and uploads."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.db = store.db
        self.blobs = store.blobs

    async def create(self, bucket: str, key: str, headers: dict[str, str],
                     checksum: dict[str, str] | None) -> str:
        check_key(key)
        upload_id = secrets.token_urlsafe(48)

        def create(c: sqlite3.Connection) -> None:
            if not c.execute("SELECT 1 FROM s3_buckets WHERE name = ?", (bucket,)).fetchone():
                raise S3Error("NoSuchBucket", "The specified bucket does not exist",
                              BucketName=bucket)
            c.execute("INSERT INTO s3_uploads VALUES (?, ?, ?, ?, ?, ?)",
                      (upload_id, bucket, key, orjson.dumps(headers).decode(),
                       orjson.dumps(checksum).decode() if checksum else None, time.time()))
        await self.db.run(create)
        return upload_id

    async def get(self, bucket: str, key: str, upload_id: str) -> Upload:
        return await self.db.run(lambda c: _upload(c, bucket, key, upload_id))

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int,
                          body: AsyncIterable[Buffer], *, algorithms: Iterable[str] = (),
                          verify: Callable[[Blob], dict[str, str]] | None = None) -> Part:
        """Store one part; `verify(blob)` may refuse it or name the checksums to keep."""
        await self.get(bucket, key, upload_id)
        blob = await self.blobs.write(body, limit=MAX_PUT, algorithms=algorithms)
        return await self._add_part(bucket, key, upload_id, number, blob, verify)

    async def copy_part(self, bucket: str, key: str, upload_id: str, number: int,
                        src: ObjectInfo, start: int, end: int) -> Part:
        """UploadPartCopy: a part from bytes [start, end] of an existing object."""
        await self.get(bucket, key, upload_id)
        try:
            blob = await self.blobs.copy_range(src.blob, start, end)
        except FileNotFoundError:
            raise S3Error("NoSuchKey", "The specified key does not exist.", Key=src.key) from None
        return await self._add_part(bucket, key, upload_id, number, blob, None)

    async def _add_part(self, bucket: str, key: str, upload_id: str, number: int, blob: Blob,
                        verify: Callable[[Blob], dict[str, str]] | None) -> Part:
        try:
            sums = verify(blob) if verify is not None else {}
            part = Part(number, blob.size, blob.md5.hex(), sums, time.time(), blob.id)

            def add(c: sqlite3.Connection) -> str | None:
                _upload(c, bucket, key, upload_id)
                old = c.execute("SELECT blob FROM s3_parts WHERE upload = ? AND number = ?",
                                (upload_id, number)).fetchone()
                c.execute("INSERT INTO s3_parts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(upload, "
                          "number) DO UPDATE SET blob = excluded.blob, size = excluded.size, "
                          "md5 = excluded.md5, checksums = excluded.checksums, "
                          "modified = excluded.modified",
                          (upload_id, number, blob.id, blob.size, part.etag,
                           orjson.dumps(sums).decode(), part.modified))
                return old[0] if old else None
            old = await self.db.run(add)
        except BaseException:
            await self.store.remove_blobs([blob.id])
            raise
        if old:
            await self.store.remove_blobs([old])
        return part

    async def complete(self, bucket: str, key: str, upload_id: str,
                       chosen: list[tuple[int, str, dict[str, str]]],
                       origin: Origin | None = None,
                       expected: dict[str, str] | None = None, *,
                       if_match: str | None = None, if_none_match: bool = False,
                       size: int | None = None) -> ObjectInfo:
        """Join the chosen (number, etag, checksums) parts into the object; S3's ETag rule.
        `expected` is the whole object's checksum as the client computed it, if it sent one."""
        def load(c: sqlite3.Connection) -> tuple[Upload, dict[int, Part]] | ObjectInfo:
            try:
                return _upload(c, bucket, key, upload_id), {p.number: p for p in
                                                             _parts(c, upload_id)}
            except S3Error:
                done = _completed(c, bucket, key, upload_id)
                if done is None:
                    raise
                return done
        loaded = await self.db.run(load)
        if isinstance(loaded, ObjectInfo):  # completed before: S3 answers as it did then
            return loaded
        upload, stored = loaded
        parts = _check_parts(chosen, stored)
        alg, kind = (upload.checksum or {}).get("algorithm"), (upload.checksum or {}).get("type")
        if alg and kind == "COMPOSITE" and any(alg not in p.checksums for p in parts):
            raise S3Error("InvalidRequest", f"The upload was created using a {alg} checksum. The "
                          "complete request must include the checksum for each part.")
        try:
            blob = await self.blobs.concat([p.blob for p in parts],
                                           [alg] if alg and kind == "FULL_OBJECT" else [])
        except FileNotFoundError:  # aborted (or completed) meanwhile
            raise _no_upload(upload_id) from None
        checksum = None
        if alg and kind == "COMPOSITE":
            value = checksums.composite(alg, [base64.b64decode(p.checksums[alg]) for p in parts])
            checksum = {"algorithm": alg, "value": value, "type": kind}
        elif alg and kind == "FULL_OBJECT":
            checksum = {"algorithm": alg, "value": checksums.b64(blob.digests[alg]), "type": kind}
        if size is not None and size != blob.size:
            await self.store.remove_blobs([blob.id])
            raise S3Error("InvalidRequest", f"The provided 'x-amz-mp-object-size' header value "
                          f"{size} does not match what was computed: {blob.size}")
        for a, value in (expected or {}).items():
            if checksum is None or a != alg or value != checksum["value"]:
                await self.store.remove_blobs([blob.id])
                raise S3Error("BadDigest", f"The {a.upper()} you specified did not match the "
                              "calculated checksum.")
        etag = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts)).hexdigest()
        info = ObjectInfo(bucket, key, blob.id, blob.size, f"{etag}-{len(parts)}",
                          blob.md5.hex(), time.time(), upload.headers, checksum,
                          parts={"upload": upload_id, "sizes": [p.size for p in parts],
                                 "checksums": [p.checksums for p in parts]})
        leftovers: list[str] = []

        def finish(c: sqlite3.Connection) -> None:
            _end_upload(c, bucket, key, upload_id)  # not aborted or completed meanwhile
            leftovers.extend(r[0] for r in c.execute(
                "DELETE FROM s3_parts WHERE upload = ? RETURNING blob", (upload_id,)))
        try:
            await self.store.commit(info, finish, if_match=if_match,
                                    if_none_match=if_none_match)
        except BaseException:
            await self.store.remove_blobs([blob.id])
            raise
        self.store.remove_later(leftovers)
        await self.store.emit("ObjectCreated:CompleteMultipartUpload", info, origin)
        return info

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        def abort(c: sqlite3.Connection) -> list[str]:
            _end_upload(c, bucket, key, upload_id)
            return [r[0] for r in c.execute("DELETE FROM s3_parts WHERE upload = ? "
                                            "RETURNING blob", (upload_id,))]
        await self.store.remove_blobs(await self.db.run(abort))

    async def list_parts(self, bucket: str, key: str, upload_id: str, after: int,
                         limit: int) -> tuple[Upload, list[Part], bool]:
        """Parts numbered above `after`, at most `limit`, and whether more follow."""
        def run(c: sqlite3.Connection) -> tuple[Upload, list[Part], bool]:
            upload = _upload(c, bucket, key, upload_id)
            parts = _parts(c, upload_id, after)
            return upload, parts[:limit], len(parts) > limit
        return await self.db.run(run)

    async def list_uploads(self, bucket: str, **kw: Any) -> UploadListing:
        """In-progress uploads by key, then age (listing.scan_uploads: prefix, delimiter,
        key_marker, upload_marker, max_uploads)."""
        def run(c: sqlite3.Connection) -> UploadListing:
            if not c.execute("SELECT 1 FROM s3_buckets WHERE name = ?", (bucket,)).fetchone():
                raise S3Error("NoSuchBucket", "The specified bucket does not exist",
                              BucketName=bucket)
            return scan_uploads(c, bucket, **kw)
        return await self.db.run(run)


def _completed(c: sqlite3.Connection, bucket: str, key: str, upload_id: str) -> ObjectInfo | None:
    """The version of `key` that upload `upload_id` completed into, if it is still there."""
    like = f'%"upload":"{upload_id}"%'
    for table in ("s3_objects", "s3_versions"):
        for row in c.execute(f"SELECT * FROM {table} WHERE bucket = ? AND key = ? AND "
                             "parts LIKE ?", (bucket, key, like)):
            info = ObjectInfo.of(row)
            if info.parts and info.parts.get("upload") == upload_id:
                return info
    return None


def _check_parts(chosen: list[tuple[int, str, dict[str, str]]],
                 stored: dict[int, Part]) -> list[Part]:
    """S3's checks on CompleteMultipartUpload's part list."""
    if not chosen:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                      "validate against our published schema")
    parts, last = [], 0
    for number, etag, sums in chosen:
        if number <= last:
            raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order. "
                          "Parts must be ordered by part number.")
        last = number
        part = stored.get(number)
        if part is None or etag.strip('"').lower() != part.etag or any(
                part.checksums.get(a) != v for a, v in sums.items()):
            raise S3Error("InvalidPart", "One or more of the specified parts could not be found. "
                          "The part may not have been uploaded, or the specified entity tag may "
                          "not match the part's entity tag.", PartNumber=str(number))
        parts.append(part)
    for part in parts[:-1]:
        if part.size < MIN_PART:
            raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum "
                          "allowed object size.", PartNumber=str(part.number),
                          MinSizeAllowed=str(MIN_PART))
    return parts
