"""API tokens: `dfy_<id>_<secret>`, stored as SHA-256 hashes and mirrored in memory.

A token is shown once, when it is created. Checking one is a hash and a dict lookup (the
gateway caches the header value, so a repeated token costs only the lookup). On first start of
a node that requires tokens and has none, one is created and written to `<data_dir>/token`
(mode 0600) for the operator, as `keys.py` does for the S3 credentials.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, ResourceNotFound
from ..stores.db import Database, lock
from .changes import OnChange, announced

SCHEMA = """CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, description TEXT NOT NULL, created REAL NOT NULL
)"""
MAX_DESCRIPTION = 256
TOPIC = "api_token"  # change notices (control/changes.py): key = token id


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the node reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Token hashes by id; `ids` maps a hash to its token id (what a request check reads)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.rows: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, str] = {}  # hash -> id
        self.changed = 0  # bumped on every change, so caches of checks can tell they are stale

        def load(c: sqlite3.Connection) -> None:
            c.execute(SCHEMA)
            for row in c.execute("SELECT * FROM api_tokens"):
                self._remember(dict(row))
        db.call(load)

    def _remember(self, row: dict[str, Any]) -> None:
        self.rows[row["id"]] = row
        self.ids[row["hash"]] = row["id"]
        self.changed += 1

    def _forget(self, token_id: str) -> None:
        row = self.rows.pop(token_id, None)
        if row is not None:
            self.ids.pop(row["hash"], None)
            self.changed += 1

    def listen(self, on_change: OnChange) -> None:
        """Take tokens created or revoked through other nodes (a revoked one fails at once)."""
        on_change(TOPIC, self._reload)

    async def _reload(self, token_id: str | None) -> None:
        where, args = (" WHERE id = ?", (token_id,)) if token_id is not None else ("", ())
        rows = await self.db.run(lambda c: [dict(r) for r in c.execute(
            "SELECT * FROM api_tokens" + where, args)])
        for gone in ({token_id} if token_id is not None else set(self.rows)) - {
                r["id"] for r in rows}:
            self._forget(gone)
        for row in rows:
            self._remember(row)

    def check(self, token: str) -> str | None:
        """The id of a valid token, else None."""
        return self.ids.get(digest(token))

    def list(self) -> list[dict[str, Any]]:
        """Every token without its hash, oldest first."""
        return [{"id": r["id"], "description": r["description"], "created": r["created"]}
                for r in sorted(self.rows.values(), key=lambda r: r["created"])]

    @staticmethod
    def _new(description: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidParameter(f"a description is a string of at most {MAX_DESCRIPTION} "
                                   "characters")
        token_id = secrets.token_hex(4)
        token = f"dfy_{token_id}_{secrets.token_urlsafe(24)}"
        return token, {"id": token_id, "hash": digest(token), "description": description,
                       "created": time.time()}

    @staticmethod
    def _insert(c: sqlite3.Connection, row: dict[str, Any]) -> None:
        c.execute("INSERT INTO api_tokens(id, hash, description, created) VALUES (?, ?, ?, ?)",
                  (row["id"], row["hash"], row["description"], row["created"]))

    async def create(self, description: str = "") -> dict[str, Any]:
        """A new token; the only time its value is handed out."""
        token, row = self._new(description)
        await self.db.run(announced(self.db, TOPIC, row["id"], lambda c: self._insert(c, row)))
        self._remember(row)
        return {"id": row["id"], "token": token, "description": row["description"],
                "created": row["created"]}

    async def revoke(self, token_id: str) -> None:
        row = self.rows.get(token_id)
        if row is None:
            raise ResourceNotFound(f"No API token with id {token_id}",
                                   hint="`dayfly token ls` lists the tokens")
        await self.db.run(announced(self.db, TOPIC, token_id, lambda c: c.execute(
            "DELETE FROM api_tokens WHERE id = ?", (token_id,))))
        self._forget(token_id)

    def bootstrap(self, data_dir: Path) -> str | None:
        """No token yet: create one and write it to `<data_dir>/token`; return its path."""
        token, row = self._new("bootstrap (created on first start)")

        def create_if_none(c: sqlite3.Connection) -> bool:
            lock(c, "api_tokens.bootstrap")  # nodes starting together create one
            if c.execute("SELECT 1 FROM api_tokens LIMIT 1").fetchone():
                return False
            self._insert(c, row)
            self.db.changed(c, TOPIC, row["id"])
            return True
        if not self.db.call(create_if_none):
            return None
        self._remember(row)
        path = data_dir / "token"
        tmp = path.with_name(f".token.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (token + "\n").encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
        return str(path)
