"""Secrets: values stored by the platform (never in a manifest), exposed only to functions
that declare them, as environment variables. Sealed at rest (`secret_box.py`)."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

from ..errors import InvalidParameter, ResourceNotFound
from ..stores.db import Database
from .changes import OnChange, announced
from .manifest import validate_secret_names
from .secret_box import SecretBox

MAX_VALUE = 32 * 1024
TOPIC = "secret"  # change notices (control/changes.py): key = secret name


class SecretStore:
    """Name → value, sealed in SQLite and mirrored (open) in memory for spec building."""

    def __init__(self, db: Database, data_dir: Path, key: bytes | None = None) -> None:
        self.db = db
        self.values: dict[str, str] = {}
        self.updated: dict[str, float] = {}
        self.generation = 0  # bumped whenever `updated` changes (the registry's spec cache)
        # opened at construction, so a missing or wrong key stops the node before it serves
        rows = db.call(lambda c: c.execute("SELECT name, value, sealed, updated FROM secrets")
                       .fetchall())
        self.box = SecretBox.open(data_dir, must_exist=any(r["sealed"] for r in rows), key=key)
        for row in rows:
            self._remember(row)
        plain = [r["name"] for r in rows if not r["sealed"]]
        if plain or ("secrets", "sealed") in db.added:  # an older data dir's first start
            self._seal_in_place(plain)

    def _remember(self, row: sqlite3.Row) -> None:
        name, sealed = row["name"], row["sealed"]
        self.values[name] = self.box.open_value(name, sealed) if sealed else row["value"]
        self.updated[name] = row["updated"]
        self.generation += 1

    def listen(self, on_change: OnChange) -> None:
        """Take secrets set or deleted through other nodes (specs using them change revision)."""
        on_change(TOPIC, self._reload)

    async def _reload(self, name: str | None) -> None:
        where, args = (" WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = await self.db.run(lambda c: c.execute(
            "SELECT name, value, sealed, updated FROM secrets" + where, args).fetchall())
        gone = ({name} if name is not None else set(self.values)) - {r["name"] for r in rows}
        for n in gone:
            self.values.pop(n, None)
            self.updated.pop(n, None)
            self.generation += 1
        for row in rows:
            self._remember(row)

    def _seal_in_place(self, names: list[str]) -> None:
        """Seal rows an older dayfly stored in plain text, then rebuild the database: its free
        pages may still hold the old values (of secrets deleted before, too), and its WAL."""
        def seal(c: sqlite3.Connection) -> None:
            for name in names:
                c.execute("UPDATE secrets SET value = '', sealed = ? WHERE name = ?",
                          (self.box.seal(name, self.values[name]), name))
        self.db.call(seal)
        self.db.compact()

    async def set(self, name: str, value: object) -> None:
        validate_secret_names([name], "secret name")
        if not isinstance(value, str) or len(value) > MAX_VALUE or "\0" in value:
            raise InvalidParameter(f"a secret value must be a string of at most {MAX_VALUE} "
                                   "characters")
        now = time.time()
        sealed = self.box.seal(name, value)
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "INSERT INTO secrets(name, value, sealed, updated) VALUES (?, '', ?, ?) ON CONFLICT"
            "(name) DO UPDATE SET value = '', sealed = excluded.sealed, updated = excluded.updated",
            (name, sealed, now))))
        self.values[name] = value
        self.updated[name] = now
        self.generation += 1

    async def delete(self, name: str) -> None:
        if name not in self.values:
            raise ResourceNotFound(f"No secret named {name}")
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "DELETE FROM secrets WHERE name = ?", (name,))))
        self.values.pop(name, None)
        self.updated.pop(name, None)
        self.generation += 1

    def fingerprint(self, names: list[str]) -> str:
        """Changes whenever one of these secrets is set or deleted (so pools restart)."""
        parts = [f"{n}={self.updated.get(n, 0)}" for n in sorted(names)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12] if names else ""

    def env(self, names: list[str]) -> dict[str, str]:
        return {n: self.values[n] for n in names if n in self.values}
