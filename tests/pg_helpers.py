"""PostgreSQL for tests: a fresh database per use, dropped afterwards.

    with fresh_database() as dsn:   # skips the test when PostgreSQL is unreachable
        db = PostgresDatabase(dsn)

    @pytest.fixture(params=BACKENDS)   # a store test over both engines
    def db(request, tmp_path):
        with open_database(request.param, tmp_path) as d:
            yield d

The server is the machine's (127.0.0.1:5432, user postgres, trust auth) unless
DAYFLY_TEST_PG names another admin DSN. In strict mode (DAYFLY_STRICT=1) a skip is a failure
(tests/conftest.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dayfly.stores.db import Database

ADMIN_DSN = os.environ.get("DAYFLY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def dsn_for(dbname: str) -> str:
    """The admin DSN with its database replaced by `dbname`."""
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)


def unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"PostgreSQL unreachable at {ADMIN_DSN}: {e}"


def require() -> None:
    """Skip the calling test (fail in strict mode) when PostgreSQL is unreachable."""
    reason = unreachable()
    if reason:
        pytest.skip(reason)


@contextmanager
def fresh_database(prefix: str = "dayfly_t") -> Iterator[str]:
    """Create an empty database `<prefix>_<random>`, yield its DSN, drop it afterwards."""
    require()
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield dsn_for(name)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = ("sqlite", "postgresql")


@contextmanager
def open_database(backend: str, tmp_path: Path, **pg_options: Any) -> Iterator[Database]:
    """A new empty `Database` of `backend` ("sqlite" | "postgresql"), closed afterwards."""
    with ExitStack() as stack:
        if backend == "sqlite":
            db = Database(tmp_path / "dayfly.db")
        else:
            from dayfly.stores.pg import PostgresDatabase
            db = PostgresDatabase(stack.enter_context(fresh_database()), **pg_options)
        stack.callback(db.close)  # before the database is dropped
        yield db
