"""Access keys for the S3 endpoint: id and secret (kept, since SigV4 verification needs it),
and the user each belongs to (its `owner`: buckets are owned by users, not keys; keys made
before users existed, and functions' keys, belong to the default user `dayfly`).

On first start, when there is no key at all, one is created and written to
`<data_dir>/credentials` (mode 0600, the aws CLI's `[default]` format). Functions' scoped keys
are not stored here: `derived` resolves them (control/function_keys.py).
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, ResourceNotFound
from ..stores.db import Database, lock
from .changes import OnChange, announced

SCHEMA = """CREATE TABLE IF NOT EXISTS access_keys (
    id TEXT PRIMARY KEY, secret TEXT NOT NULL, description TEXT NOT NULL, created REAL NOT NULL,
    owner TEXT NOT NULL DEFAULT 'dayfly'
)"""
DEFAULT_USER = "dayfly"  # the operator: owns the first key, older keys and buckets, functions
USER_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_ID_CHARS = string.ascii_uppercase + string.digits
MAX_DESCRIPTION = 256
TOPIC = "access_key"  # change notices (control/changes.py): key = key id


class KeyStore:
    """Key id → secret, persisted in SQLite and mirrored in memory (checked on every S3 call)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._keys: dict[str, dict[str, Any]] = {}
        self.derived: Callable[[str], str | None] | None = None  # function keys' secrets
        db.call(lambda c: c.execute(SCHEMA))
        self._load()

    def _load(self) -> None:
        self._keys.update(self.db.call(lambda c: _read(c, None)))

    def listen(self, on_change: OnChange) -> None:
        """Take keys created or deleted through other nodes (a deleted one fails at once)."""
        on_change(TOPIC, self._reload)

    async def _reload(self, key_id: str | None) -> None:
        keys = await self.db.run(lambda c: _read(c, key_id))
        for gone in ({key_id} if key_id is not None else set(self._keys)) - set(keys):
            self._keys.pop(gone, None)
        self._keys.update(keys)

    def secret(self, key_id: str) -> str | None:
        key = self._keys.get(key_id)
        if key is None and self.derived is not None:
            return self.derived(key_id)
        return key["secret"] if key else None

    def owner(self, key_id: str) -> str | None:
        """The user a key belongs to (functions' keys: the default user); None: no such key."""
        key = self._keys.get(key_id)
        if key is not None:
            return key["owner"]
        return DEFAULT_USER if self.derived is not None and self.derived(key_id) else None

    def list(self) -> list[dict[str, Any]]:
        """Every key without its secret, oldest first."""
        return [{"id": k["id"], "description": k["description"], "created": k["created"],
                 "user": k["owner"]}
                for k in sorted(self._keys.values(), key=lambda k: k["created"])]

    def _new(self, description: str, user: str = DEFAULT_USER) -> dict[str, Any]:
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidParameter(f"a description is a string of at most {MAX_DESCRIPTION} "
                                   "characters")
        if not isinstance(user, str) or not USER_RE.fullmatch(user):
            raise InvalidParameter("a user name is 1-64 characters: lower-case letters, digits, "
                                   "'_', '.', '-' (first a letter or digit)")
        return {"id": "DF" + "".join(secrets.choice(_ID_CHARS) for _ in range(18)),
                "secret": secrets.token_urlsafe(30), "description": description,
                "created": time.time(), "owner": user}

    @staticmethod
    def _insert(c: sqlite3.Connection, key: dict[str, Any]) -> None:
        c.execute("INSERT INTO access_keys(id, secret, description, created, owner) VALUES "
                  "(?, ?, ?, ?, ?)", (key["id"], key["secret"], key["description"],
                                      key["created"], key["owner"]))

    async def create(self, description: str = "", user: str = DEFAULT_USER) -> dict[str, Any]:
        """A new key of `user`; the only time its secret is handed out."""
        key = self._new(description, user)
        await self.db.run(announced(self.db, TOPIC, key["id"], lambda c: self._insert(c, key)))
        self._keys[key["id"]] = key
        return dict(key)

    async def delete(self, key_id: str) -> None:
        if key_id not in self._keys:
            raise ResourceNotFound(f"No access key with id {key_id}",
                                   hint="`dayfly keys ls` lists the access keys")
        await self.db.run(announced(self.db, TOPIC, key_id, lambda c: c.execute(
            "DELETE FROM access_keys WHERE id = ?", (key_id,))))
        self._keys.pop(key_id, None)

    def bootstrap(self, data_dir: Path) -> dict[str, Any] | None:
        """First start: create a default key and write `<data_dir>/credentials`; else None."""
        key = self._new("default (created on first start)")

        def create_if_none(c: sqlite3.Connection) -> bool:
            lock(c, "access_keys.bootstrap")  # nodes starting together create one
            if c.execute("SELECT 1 FROM access_keys LIMIT 1").fetchone():
                return False
            self._insert(c, key)
            self.db.changed(c, TOPIC, key["id"])
            return True
        if not self.db.call(create_if_none):
            return None
        self._keys[key["id"]] = key
        write_credentials(data_dir / "credentials", key["id"], key["secret"])
        return key


def _read(c: sqlite3.Connection, key_id: str | None) -> dict[str, dict[str, Any]]:
    where, args = (" WHERE id = ?", (key_id,)) if key_id is not None else ("", ())
    return {row["id"]: dict(row) for row in c.execute("SELECT * FROM access_keys" + where, args)}


def write_credentials(path: Path, key_id: str, secret: str) -> None:
    """An aws-CLI credentials file readable by its owner only, replaced atomically."""
    text = (f"# dayfly S3 access key, written on first start (see `dayfly keys`)\n"
            f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)
