"""Bucket notification configurations: which functions hear which object events of a bucket.

Configurations are keyed by (source, bucket). Source `local` is the built-in object store
(configured through S3's PutBucketNotificationConfiguration or `dayfly trigger add`); any
other source is an external store that posts its events to the ingestion endpoint, and its
buckets are only names. Persisted in SQLite, mirrored in memory: matched on every change.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from ..stores.db import Database
from .changes import OnChange, announced
from .registry import split_name

LOCAL = "local"
SCHEMA = """CREATE TABLE IF NOT EXISTS bucket_notifications (
    source TEXT NOT NULL, bucket TEXT NOT NULL, rules TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (source, bucket)) WITHOUT ROWID"""
EVENTS = ("s3:ObjectCreated:*", "s3:ObjectCreated:Put", "s3:ObjectCreated:Post",
          "s3:ObjectCreated:Copy", "s3:ObjectCreated:CompleteMultipartUpload",
          "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated")
SHORTHANDS = {"created": ("s3:ObjectCreated:*",), "removed": ("s3:ObjectRemoved:*",),
              "all": ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")}
MAX_RULES = 100  # per bucket
MAX_FILTER = 1024  # bytes of a prefix or suffix (a key's limit)
MAX_ID = 255
TOPIC = "notification"  # change notices (control/changes.py): key "source/bucket" or "source"


@dataclass(frozen=True, slots=True)
class Rule:
    """One notification configuration: events and key filters → a function (and qualifier)."""

    id: str
    function: str
    qualifier: str | None
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""
    arn: str = ""  # as the user gave it (returned by GetBucketNotificationConfiguration)

    def matches(self, event_name: str, key: str) -> bool:
        """`event_name` as in records (ObjectCreated:Put, with or without `s3:`); `key` decoded."""
        name = "s3:" + event_name.removeprefix("s3:")
        if not any(e == name or (e.endswith(":*") and name.startswith(e[:-1]))
                   for e in self.events):
            return False
        return key.startswith(self.prefix) and key.endswith(self.suffix)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "events": list(self.events)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rule:
        return cls(**{**d, "events": tuple(d["events"])})


def normalize_events(events: Any) -> tuple[str, ...]:
    """S3 event types, or the shorthands created/removed/all; unknown ones are refused."""
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list | tuple) or not events:
        raise InvalidParameter("a notification needs at least one event type")
    out: list[str] = []
    for e in events:
        if not isinstance(e, str):
            raise InvalidParameter(f"event types are strings, got {e!r}")
        if e in SHORTHANDS:
            out += SHORTHANDS[e]
        elif e in EVENTS:
            out.append(e)
        else:
            raise InvalidParameter(f"event type {e!r} is not supported (supported: "
                                   f"{', '.join(EVENTS)}; or created, removed, all)")
    return tuple(dict.fromkeys(out))


def make_rule(function: Any, events: Any, prefix: Any = "", suffix: Any = "",
              rule_id: Any = None) -> Rule:
    """A validated rule; `function` is a name, `name:qualifier` or a Lambda ARN."""
    if not isinstance(function, str) or not function:
        raise InvalidParameter("a notification needs a function (name or ARN)")
    name, qualifier = split_name(function)
    for what, value in (("prefix", prefix), ("suffix", suffix)):
        if not isinstance(value, str) or len(value.encode()) > MAX_FILTER:
            raise InvalidParameter(f"a {what} filter is a string of at most {MAX_FILTER} bytes")
    if rule_id in (None, ""):
        rule_id = str(uuid.uuid4())
    if not isinstance(rule_id, str) or len(rule_id) > MAX_ID:
        raise InvalidParameter(f"a notification Id is a string of at most {MAX_ID} characters")
    return Rule(rule_id, name, qualifier, normalize_events(events), prefix, suffix, function)


class NotificationStore:
    """(source, bucket) → rules; writes go to SQLite first, then to memory."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._rules: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self._lock = asyncio.Lock()  # serializes writes (add and remove read, then write)
        db.call(lambda c: c.execute(SCHEMA))

    def load(self) -> None:
        self._rules.update(self.db.call(lambda c: _read(c, None, None)))

    def listen(self, on_change: OnChange) -> None:
        """Take configurations put or dropped through other nodes."""
        on_change(TOPIC, self._reload)

    async def _reload(self, key: str | None) -> None:
        source, _, bucket = key.partition("/") if key is not None else ("", "", "")
        async with self._lock:
            fresh = await self.db.run(lambda c: _read(c, source or None, bucket or None))
            for k in [k for k in self._rules if source in ("", k[0]) and bucket in ("", k[1])
                      and k not in fresh]:
                del self._rules[k]
            self._rules.update(fresh)

    def rules(self, source: str, bucket: str) -> tuple[Rule, ...]:
        return self._rules.get((source, bucket), ())

    def listing(self, source: str | None = None, bucket: str | None = None,
                function: str | None = None) -> list[dict[str, Any]]:
        """Every rule as JSON with its source and bucket, filtered, in a stable order."""
        out = []
        for (src, bkt), rules in sorted(self._rules.items()):
            if (source and src != source) or (bucket and bkt != bucket):
                continue
            out += [{"source": src, "bucket": bkt, **r.to_json()} for r in rules
                    if not function or r.function == function]
        return out

    async def put(self, source: str, bucket: str, rules: list[Rule]) -> None:
        """Replace the bucket's whole configuration (empty removes it), as S3's PUT does."""
        async with self._lock:
            await self._put(source, bucket, rules)

    async def _put(self, source: str, bucket: str, rules: list[Rule]) -> None:
        ids = [r.id for r in rules]
        if len(set(ids)) != len(ids):
            raise InvalidParameter("notification Ids must be unique within a bucket")
        if len(rules) > MAX_RULES:
            raise InvalidParameter(f"a bucket has at most {MAX_RULES} notification "
                                   "configurations")
        text = json.dumps([r.to_json() for r in rules])

        def write(c: sqlite3.Connection) -> None:
            if rules:
                c.execute("INSERT INTO bucket_notifications VALUES (?, ?, ?, ?) ON CONFLICT"
                          "(source, bucket) DO UPDATE SET rules = excluded.rules, "
                          "updated = excluded.updated",
                          (source, bucket, text, time.time()))
            else:
                c.execute("DELETE FROM bucket_notifications WHERE source = ? AND bucket = ?",
                          (source, bucket))
        await self.db.run(announced(self.db, TOPIC, f"{source}/{bucket}", write))
        if rules:
            self._rules[(source, bucket)] = tuple(rules)
        else:
            self._rules.pop((source, bucket), None)

    async def add(self, source: str, bucket: str, rule: Rule) -> None:
        async with self._lock:
            current = self.rules(source, bucket)
            if any(r.id == rule.id for r in current):
                raise ResourceConflict(f"bucket {bucket} ({source}) already has a notification "
                                       f"with Id {rule.id}")
            await self._put(source, bucket, [*current, rule])

    async def remove(self, source: str, bucket: str, rule_id: str) -> None:
        async with self._lock:
            current = self.rules(source, bucket)
            if not any(r.id == rule_id for r in current):
                raise ResourceNotFound(f"bucket {bucket} ({source}) has no notification with Id "
                                       f"{rule_id}", hint="`dayfly trigger ls` lists them")
            await self._put(source, bucket, [r for r in current if r.id != rule_id])

    async def forget(self, source: str, bucket: str | None = None) -> None:
        """Drop a bucket's configuration (the bucket was deleted), or a whole source's."""
        sql, args = "DELETE FROM bucket_notifications WHERE source = ?", [source]
        if bucket is not None:
            sql, args = sql + " AND bucket = ?", [*args, bucket]
        notice = source if bucket is None else f"{source}/{bucket}"
        await self.db.run(announced(self.db, TOPIC, notice, lambda c: c.execute(sql, args)))
        for key in [k for k in self._rules if k[0] == source and bucket in (None, k[1])]:
            del self._rules[key]

    def prune_local(self, existing: set[str]) -> None:
        """At start: drop configurations of local buckets that no longer exist (a crash between
        a bucket's deletion and its configuration's)."""
        gone = [b for (s, b) in self._rules if s == LOCAL and b not in existing]

        def delete(c: sqlite3.Connection) -> None:
            c.executemany("DELETE FROM bucket_notifications WHERE source = ? AND bucket = ?",
                          [(LOCAL, b) for b in gone])
            for b in gone:
                self.db.changed(c, TOPIC, f"{LOCAL}/{b}")
        self.db.call(delete)
        for b in gone:
            del self._rules[(LOCAL, b)]


def _read(c: sqlite3.Connection, source: str | None,
          bucket: str | None) -> dict[tuple[str, str], tuple[Rule, ...]]:
    """Every configuration, a source's, or one bucket's."""
    sql, args = "SELECT source, bucket, rules FROM bucket_notifications", []
    if source is not None:
        sql, args = sql + " WHERE source = ?", [source]
        if bucket is not None:
            sql, args = sql + " AND bucket = ?", [*args, bucket]
    return {(row[0], row[1]): tuple(Rule.from_json(r) for r in json.loads(row[2]))
            for row in c.execute(sql, args)}
