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
                         "ORDER BY key", (bucket, pos))
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
