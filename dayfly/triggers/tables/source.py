"""What a table change source is: its location (a URL or dayfly ARN), the changes it yields in
commit order, and the interface the SQLite and PostgreSQL backends implement.

Source locations (EventSourceArn accepts either form):

    sqlite:///abs/path/app.db#orders                    arn:dayfly:table:sqlite:///abs/path/app.db#orders
    postgresql://user[:pw]@host:5432/db#public.orders   arn:dayfly:table:postgresql://user@host:5432/db#public.orders

A `?view=NEW_IMAGE` query (KEYS_ONLY, NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES) picks the
StreamViewType; passwords are never shown back (`***`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ...errors import InvalidParameter

ARN_PREFIX = "arn:dayfly:table:"
VIEWS = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


class SourceError(Exception):
    """The source cannot be used (unreachable, no such table, no primary key, no privilege)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One committed row change; `seq` increases in commit order within its source."""

    seq: int
    op: str  # "I" insert, "U" update, "D" delete
    ts: float  # epoch seconds when the change was made
    keys: dict[str, Any]
    new: dict[str, Any] | None
    old: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class TableURL:
    """A parsed source location; `key` identifies the captured table (the change log it shares)."""

    scheme: str  # "sqlite" | "postgresql"
    dsn: str  # a file path (sqlite) or a libpq URL with its password (postgresql)
    table: str  # "orders" (sqlite) or "schema.table" (postgresql)
    view: str | None = None

    @property
    def masked(self) -> str:
        """The URL as shown to people and in records: no password, no view."""
        if self.scheme == "sqlite":
            return f"sqlite://{self.dsn}#{self.table}"
        return f"{_mask(self.dsn)}#{self.table}"

    @property
    def arn(self) -> str:
        return ARN_PREFIX + self.masked

    @property
    def key(self) -> str:
        if self.scheme == "sqlite":
            return f"sqlite:{os.path.realpath(self.dsn)}#{self.table}"
        u = urlsplit(self.dsn)
        return f"postgresql:{u.hostname or ''}:{u.port or 5432}{u.path}#{self.table}"

    @property
    def schema_table(self) -> tuple[str, str]:
        schema, _, table = self.table.rpartition(".")
        return schema or "public", table


def _mask(dsn: str) -> str:
    u = urlsplit(dsn)
    if u.password is None:
        return dsn
    netloc = f"{u.username or ''}:***@{u.hostname or ''}" + (f":{u.port}" if u.port else "")
    return u._replace(netloc=netloc).geturl()


def _bad(text: str, why: str) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid table source {text!r}: {why}",
        hint="use sqlite:///abs/path/app.db#table or postgresql://user@host:5432/db#schema.table "
             "(optionally prefixed with arn:dayfly:table:)")


def parse_table_url(text: Any) -> TableURL:
    """Parse a table source URL or dayfly ARN; raise InvalidParameter on anything malformed."""
    if not isinstance(text, str) or not text:
        raise _bad(str(text), "a URL string is required")
    raw = text[len(ARN_PREFIX):] if text.startswith(ARN_PREFIX) else text
    location, sep, table = raw.partition("#")
    if not sep or not table:
        raise _bad(text, "the table is missing (add #table after the database)")
    parts = urlsplit(location)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    view = query.pop("view", None)
    if view is not None and view not in VIEWS:
        raise _bad(text, f"view must be one of {', '.join(VIEWS)}")
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        while path.startswith("//"):
            path = path[1:]
        if parts.netloc or not path.startswith("/") or len(path) < 2:
            raise _bad(text, "a SQLite source needs an absolute path: sqlite:///abs/path/app.db")
        if query:
            raise _bad(text, f"unknown option(s) {', '.join(query)}")
        if not IDENT_RE.match(table):
            raise _bad(text, f"{table!r} is not a table name")
        return TableURL("sqlite", path, table, view)
    if parts.scheme in ("postgresql", "postgres"):
        if not parts.hostname or not parts.path.strip("/"):
            raise _bad(text, "a PostgreSQL source needs a host and a database: "
                             "postgresql://user@host:5432/db#schema.table")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise _bad(text, "the port is not a number") from None
        names = table.split(".")
        if len(names) > 2 or not all(IDENT_RE.match(n) for n in names):
            raise _bad(text, f"{table!r} is not a [schema.]table name")
        qualified = table if len(names) == 2 else f"public.{table}"
        dsn = parts._replace(scheme="postgresql", query=urlencode(query), fragment="").geturl()
        return TableURL("postgresql", dsn, qualified, view)
    raise _bad(text, "the scheme must be sqlite:// or postgresql://")


class Source(ABC):
    """A captured table. Calls are made by one consumer at a time, never concurrently."""

    kind: str = ""

    def __init__(self, url: TableURL) -> None:
        self.url = url
        self.changed = asyncio.Event()  # set when a commit may have added changes

    @abstractmethod
    async def open(self) -> None:
        """Connect and check the table (exists, has a primary key); raise SourceError."""

    @abstractmethod
    async def install(self) -> None:
        """Create (or refresh) the change log and the capture triggers; idempotent."""

    @abstractmethod
    async def uninstall(self) -> None:
        """Remove everything install created, leaving the user's schema as it was."""

    @abstractmethod
    async def head(self) -> int:
        """The newest sequence number captured (0 if none)."""

    @abstractmethod
    async def read(self, after: int, limit: int) -> list[Change]:
        """Up to `limit` committed changes with seq > after, oldest first."""

    @abstractmethod
    async def prune(self, upto: int) -> None:
        """Forget changes with seq <= upto (every reader has acknowledged them)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the source can be opened again."""

    async def wait(self, timeout: float) -> None:
        """Return when a change may have been committed since the last read, or at timeout."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)


def open_source(url: TableURL) -> Source:
    """The backend for a URL (not connected yet)."""
    if url.scheme == "sqlite":
        from .sqlite import SqliteSource
        return SqliteSource(url)
    from .postgres import PostgresSource
    return PostgresSource(url)
