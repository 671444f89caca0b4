"""External object stores allowed to post events: a name and the SHA-256 of its bearer token.

The token is handed out once, at creation; only its hash is stored (it is 256 random bits,
so a plain hash is enough), and it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from typing import Any

from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from ..stores.db import Database
from .changes import OnChange, announced
from .notifications import LOCAL

SCHEMA = """CREATE TABLE IF NOT EXISTS ingest_sources (
    name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, description TEXT NOT NULL,
    created REAL NOT NULL)"""
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TOKEN_PREFIX = "dfi_"
TOPIC = "ingest_source"  # change notices (control/changes.py): key = source name


def _read(c: sqlite3.Connection, name: str | None) -> dict[str, dict[str, Any]]:
    where, args = (" WHERE name = ?", (name,)) if name is not None else ("", ())
    return {row["name"]: dict(row) for row in c.execute("SELECT * FROM ingest_sources" + where,
                                                         args)}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IngestSources:
    """Name → token hash, in SQLite and mirrored in memory (checked on every ingest request)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sources: dict[str, dict[str, Any]] = {}
        db.call(lambda c: c.execute(SCHEMA))

    def load(self) -> None:
        self._sources.update(self.db.call(lambda c: _read(c, None)))

    def listen(self, on_change: OnChange) -> None:
        """Take sources created or deleted through other nodes (a deleted one fails at once)."""
        on_change(TOPIC, self._reload)

    async def _reload(self, name: str | None) -> None:
        fresh = await self.db.run(lambda c: _read(c, name))
        for gone in ({name} if name is not None else set(self._sources)) - set(fresh):
            self._sources.pop(gone, None)
        self._sources.update(fresh)

    def exists(self, name: str) -> bool:
        return name in self._sources

    def check_token(self, name: str, token: str) -> bool:
        src = self._sources.get(name)
        expected = src["token_sha256"] if src else _hash("")
        return hmac.compare_digest(_hash(token), expected) and src is not None

    def list(self) -> list[dict[str, Any]]:
        return [{"name": s["name"], "description": s["description"], "created": s["created"]}
                for s in sorted(self._sources.values(), key=lambda s: s["name"])]

    async def create(self, name: Any, description: Any = "") -> dict[str, Any]:
        """A new source; the only time its token is handed out."""
        if not isinstance(name, str) or not NAME_RE.match(name) or name == LOCAL:
            raise InvalidParameter("a source name is 1-63 lowercase letters, digits, '-' or '_' "
                                   f"(and not {LOCAL!r}, the built-in store)")
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidParameter("a description is a string of at most 256 characters")
        if name in self._sources:
            raise ResourceConflict(f"ingest source {name} exists already",
                                   hint=f"`dayfly ingest rm {name}` first to get a new token")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {"name": name, "token_sha256": _hash(token), "description": description,
               "created": time.time()}
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "INSERT INTO ingest_sources(name, token_sha256, description, created) "
            "VALUES (?, ?, ?, ?)", (name, row["token_sha256"], description, row["created"]))))
        self._sources[name] = row
        return {"name": name, "token": token, "description": description,
                "created": row["created"]}

    async def delete(self, name: str) -> None:
        if name not in self._sources:
            raise ResourceNotFound(f"No ingest source named {name}",
                                   hint="`dayfly ingest ls` lists them")
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "DELETE FROM ingest_sources WHERE name = ?", (name,))))
        self._sources.pop(name, None)
