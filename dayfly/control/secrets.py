"""Secrets: values stored by the platform (never in a manifest), exposed only to functions
that declare them, as environment variables."""

from __future__ import annotations

import hashlib
import sqlite3
import time

from ..errors import InvalidParameter, ResourceNotFound
from ..stores.db import Database
from .manifest import validate_secret_names

MAX_VALUE = 32 * 1024


class SecretStore:
    """Name → value, persisted in SQLite and mirrored in memory for spec building."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.values: dict[str, str] = {}
        self.updated: dict[str, float] = {}

    def load(self) -> None:
        def read(conn: sqlite3.Connection) -> None:
            for row in conn.execute("SELECT name, value, updated FROM secrets"):
                self.values[row["name"]] = row["value"]
                self.updated[row["name"]] = row["updated"]
        self.db.call(read)

    async def set(self, name: str, value: object) -> None:
        validate_secret_names([name], "secret name")
        if not isinstance(value, str) or len(value) > MAX_VALUE or "\0" in value:
            raise InvalidParameter(f"a secret value must be a string of at most {MAX_VALUE} "
                                   "characters")
        now = time.time()
        await self.db.run(lambda c: c.execute(
            "INSERT OR REPLACE INTO secrets(name, value, updated) VALUES (?, ?, ?)",
            (name, value, now)))
        self.values[name] = value
        self.updated[name] = now

    async def delete(self, name: str) -> None:
        if name not in self.values:
            raise ResourceNotFound(f"No secret named {name}")
        await self.db.run(lambda c: c.execute("DELETE FROM secrets WHERE name = ?", (name,)))
        self.values.pop(name, None)
        self.updated.pop(name, None)

    def fingerprint(self, names: list[str]) -> str:
        """Changes whenever one of these secrets is set or deleted (so pools restart)."""
        parts = [f"{n}={self.updated.get(n, 0)}" for n in sorted(names)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12] if names else ""

    def env(self, names: list[str]) -> dict[str, str]:
        return {n: self.values[n] for n in names if n in self.values}
