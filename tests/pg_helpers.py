"""PostgreSQL for tests: a fresh database per use, dropped afterwards.

    with fresh_database() as dsn:   # skips the test when PostgreSQL is unreachable
        db = PostgresDatabase(dsn)

The server is the machine's (127.0.0.1:5432, user postgres, trust auth) unless
DAYFLY_TEST_PG names another admin DSN. In strict mode (DAYFLY_STRICT=1) a skip is a failure
(tests/conftest.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

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
