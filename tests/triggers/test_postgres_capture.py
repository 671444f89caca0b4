"""PostgreSQL-specific capture: commit order versus id order, roles and privileges."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from trigger_helpers import pg_dsn

from dayfly.triggers.tables.source import SourceError, open_source, parse_table_url

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def schema() -> Iterator[tuple[str, str, object]]:
    dsn = pg_dsn()
    name = f"dft_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"CREATE SCHEMA {name}")
    conn.execute(f"CREATE TABLE {name}.orders (id int PRIMARY KEY, v text)")
    try:
        yield dsn, name, conn
    finally:
        conn.execute(f"DROP SCHEMA {name} CASCADE")
        conn.close()


@pytest.fixture
def role(schema) -> Iterator[str]:
    """A login role that can read and write the table but not add triggers to it."""
    _, name, conn = schema
    role = f"dft_role_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    conn.execute(f"GRANT USAGE ON SCHEMA {name} TO {role}")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name}.orders TO {role}")
    try:
        yield role
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def as_role(dsn: str, role: str) -> str:
    u = urlsplit(dsn)
    return u._replace(netloc=f"{role}@{u.hostname}:{u.port or 5432}").geturl()


async def test_a_later_id_that_commits_first_is_numbered_first(schema):
    dsn, name, conn = schema
    source = open_source(parse_table_url(f"{dsn}#{name}.orders"))
    await source.open()
    await source.install()
    slow = psycopg.connect(dsn)
    try:
        slow.execute(f"INSERT INTO {name}.orders VALUES (1, 'slow')")  # takes the lower id
        conn.execute(f"INSERT INTO {name}.orders VALUES (2, 'fast')")  # commits first
        first = await source.read(0, 10)
        assert [(c.seq, c.keys) for c in first] == [(1, {"id": 2})]
        slow.commit()
        second = await source.read(first[-1].seq, 10)
        assert [(c.seq, c.keys) for c in second] == [(2, {"id": 1})]  # not skipped
    finally:
        slow.close()
        await source.close()


async def test_a_role_without_trigger_privilege_is_refused(schema, role):
    dsn, name, _ = schema
    source = open_source(parse_table_url(f"{as_role(dsn, role)}#{name}.orders"))
    with pytest.raises(SourceError, match=f"role {role} may not capture.*lacks TRIGGER"):
        await source.open()
    await source.close()


async def test_other_roles_keep_writing_the_captured_table(schema, role):
    """The capture function runs as its owner: writers need no grant on dayfly's log."""
    dsn, name, _ = schema
    source = open_source(parse_table_url(f"{dsn}#{name}.orders"))
    await source.open()
    await source.install()
    try:
        with psycopg.connect(as_role(dsn, role), autocommit=True) as writer:
            writer.execute(f"INSERT INTO {name}.orders VALUES (5, 'by role')")
        assert [c.new for c in await source.read(0, 10)] == [{"id": 5, "v": "by role"}]
    finally:
        await source.close()
