"""ListObjects over the objects table: prefix, delimiter (common prefixes), pages in key order.

Keys are TEXT compared byte by byte (SQLite's BINARY collation; on PostgreSQL the column is
COLLATE "C", stores/pg.py), which on UTF-8 is code point order, as S3 sorts. A common prefix
is skipped in one query by restarting at its successor: the smallest
string greater than every string that starts with it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Listing:
    """One page: rows of the objects table, common prefixes, and where the next page starts."""

    rows: list[Any] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_start: str | None = None  # with next_inclusive: a continuation position
    next_inclusive: bool = False
    last: str | None = None  # the last key or common prefix returned (ListObjects v1's NextMarker)


def successor(s: str) -> str | None:
    """The smallest string greater than every string starting with `s` (None: there is none)."""
    while s:
        c = ord(s[-1]) + 1
        if c <= 0x10FFFF:
            if 0xD800 <= c <= 0xDFFF:  # surrogates cannot be stored; skip the gap
                c = 0xE000
            return s[:-1] + chr(c)
        s = s[:-1]
    return None


def scan(c: sqlite3.Connection, bucket: str, *, prefix: str = "", delimiter: str = "",
         start: str = "", inclusive: bool = True, max_keys: int = 1000) -> Listing:
    """A page of at most `max_keys` keys and common prefixes at or after `start`."""
    out = Listing()
    after = None if inclusive else start  # common prefixes at or before it were listed already
    pos: str | None = start
    if start < prefix:
        pos, inclusive = prefix, True
    while pos is not None:
        op = ">=" if inclusive else ">"
        rows = c.execute(f"SELECT * FROM s3_objects WHERE bucket = ? AND key {op} ? "
                         "AND marker = 0 ORDER BY key", (bucket, pos))
        jumped = False
        for row in rows:
            key: str = row["key"]
            if not key.startswith(prefix):
                return out
            cp = None
            if delimiter:
                i = key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = key[: i + len(delimiter)]
            if cp is not None and after is not None and cp <= after:
                pos, inclusive, jumped = successor(cp), True, True
                break
            if len(out.rows) + len(out.prefixes) >= max_keys:
                out.truncated = True
                return out
            if cp is None:
                out.rows.append(row)
                out.last = key
                out.next_start, out.next_inclusive = key, False
                continue
            out.prefixes.append(cp)
            out.last = cp
            out.next_start, out.next_inclusive = successor(cp), True
            pos, inclusive, jumped = out.next_start, True, True
            break
        rows.close()
        if not jumped:
            return out
    return out


@dataclass(slots=True)
class VersionListing:
    """One page of ListObjectVersions: (row, is latest) in key order, newest first per key."""

    rows: list[tuple[Any, bool]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_key: str | None = None
    next_version: str | None = None


_VERSIONS = ("SELECT *, 1 AS latest FROM s3_objects WHERE bucket = ? AND key {op} ? UNION ALL "
             "SELECT *, 0 AS latest FROM s3_versions WHERE bucket = ? AND key {op} ? "
             "ORDER BY key, latest DESC, seq DESC")


def scan_versions(c: sqlite3.Connection, bucket: str, *, prefix: str = "", delimiter: str = "",
                  key_marker: str = "", version_marker: str = "",
                  max_keys: int = 1000) -> VersionListing:
    """A page of at most `max_keys` versions and common prefixes after the markers (a key's
    versions after `version_marker`, then the keys after `key_marker`)."""
    out = VersionListing()
    pos, inclusive = key_marker, not key_marker
    skip_to = None  # the versions of key_marker up to this one were listed already
    if key_marker and version_marker:
        inclusive, skip_to = True, version_marker
    after = key_marker if key_marker else None  # common prefixes at or before it were listed
    if pos < prefix:
        pos, inclusive, skip_to = prefix, True, None
    cols = ("bucket, key, blob, size, etag, md5, modified, headers, checksum, version, marker, "
            "seq, parts")
    sql = _VERSIONS.replace("*", cols)
    while True:
        op = ">=" if inclusive else ">"
        rows = c.execute(sql.format(op=op), (bucket, pos, bucket, pos))
        jumped = False
        for row in rows:
            key: str = row["key"]
            if skip_to is not None:
                if key == key_marker:
                    if row["version"] == skip_to:
                        skip_to = None
                    continue
                skip_to = None  # the marker's version is gone: go on with the next key
            if key == key_marker and not version_marker:
                continue
            if not key.startswith(prefix):
                rows.close()
                return out
            cp = None
            if delimiter:
                i = key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = key[: i + len(delimiter)]
            if cp is not None and after is not None and cp <= after:
                nxt = successor(cp)
                if nxt is None:
                    rows.close()
                    return out
                pos, inclusive, jumped = nxt, True, True
                break
            if len(out.rows) + len(out.prefixes) >= max_keys:
                out.truncated = True
                rows.close()
                return out
            if cp is None:
                out.rows.append((row, bool(row["latest"])))
                out.next_key, out.next_version = key, row["version"]
                continue
            out.prefixes.append(cp)
            out.next_key, out.next_version = cp, None
            nxt = successor(cp)
            if nxt is None:
                rows.close()
                return out
            pos, inclusive, jumped = nxt, True, True
            break
        rows.close()
        if not jumped:
            return out


@dataclass(slots=True)
class UploadListing:
    """One page of ListMultipartUploads: upload rows (id, key, created) by key, then age."""

    rows: list[Any] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_key: str | None = None
    next_upload: str | None = None


def scan_uploads(c: sqlite3.Connection, bucket: str, *, prefix: str = "", delimiter: str = "",
                 key_marker: str = "", upload_marker: str = "",
                 max_uploads: int = 1000) -> UploadListing:
    """A page of at most `max_uploads` uploads and common prefixes after the markers: with
    `upload_marker`, `key_marker`'s uploads begun after that one, then the keys after
    `key_marker` (S3 ignores `upload_marker` without `key_marker`). A marker upload that is
    gone (completed or aborted since) lists its key's uploads from the start: repeated rather
    than skipped."""
    out = UploadListing()
    pos, inclusive = key_marker, not key_marker
    after_upload: tuple[float, str] | None = None  # key_marker's uploads up to it were listed
    if key_marker and upload_marker:
        inclusive, after_upload = True, (float("-inf"), "")
        row = c.execute("SELECT created FROM s3_uploads WHERE id = ? AND bucket = ? AND "
                        "key = ?", (upload_marker, bucket, key_marker)).fetchone()
        if row is not None:
            after_upload = (row["created"], upload_marker)
    after = key_marker or None  # common prefixes at or before it were listed already
    if pos < prefix:
        pos, inclusive, after_upload = prefix, True, None
    while True:
        op = ">=" if inclusive else ">"
        rows = c.execute(f"SELECT id, key, created FROM s3_uploads WHERE bucket = ? AND "
                         f"key {op} ? ORDER BY key, created, id", (bucket, pos))
        jumped = False
        for row in rows:
            key: str = row["key"]
            if key == key_marker and (after_upload is None
                                      or (row["created"], row["id"]) <= after_upload):
                continue
            if not key.startswith(prefix):
                rows.close()
                return out
            cp = None
            if delimiter:
                i = key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = key[: i + len(delimiter)]
            if cp is not None and after is not None and cp <= after:
                nxt = successor(cp)
                if nxt is None:
                    rows.close()
                    return out
                pos, inclusive, jumped = nxt, True, True
                break
            if len(out.rows) + len(out.prefixes) >= max_uploads:
                out.truncated = True
                rows.close()
                return out
            if cp is None:
                out.rows.append(row)
                out.next_key, out.next_upload = key, row["id"]
                continue
            out.prefixes.append(cp)
            out.next_key, out.next_upload = cp, None
            nxt = successor(cp)
            if nxt is None:
                rows.close()
                return out
            pos, inclusive, jumped = nxt, True, True
            break
        rows.close()
        if not jumped:
            return out
