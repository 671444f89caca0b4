"""Bucket owners, ACLs, policies, CORS rules, public access blocks and key owners reach the other
node of a cluster (two AccessStores and KeyStores over one fresh PostgreSQL database, each with
its own LISTEN connection): a write through node A is in node B's memory, which the S3 endpoint
reads on every request, within 1 s. Waits are gated on B's change callbacks, never on sleeps."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable

import pytest
from pg_helpers import fresh_database

from dayfly.control.bucket_access import AccessStore
from dayfly.control.changes import follow
from dayfly.control.keys import KeyStore
from dayfly.stores.pg import PostgresDatabase

APPLIED_WITHIN_S = 1.0
GIVE_UP_S = 10.0


class Node:
    def __init__(self, dsn: str) -> None:
        self.db = PostgresDatabase(dsn)
        self.applied = 0
        self.cond = asyncio.Condition()
        register = self.db.on_change

        def on_change(topic: str, callback: Callable) -> None:
            async def watched(key: str | None) -> None:
                out = callback(key)
                if inspect.isawaitable(out):
                    await out
                async with self.cond:
                    self.applied += 1
                    self.cond.notify_all()
            register(topic, watched)
        self.db.on_change = on_change  # type: ignore[method-assign]
        self.keys = KeyStore(self.db)
        self.access = AccessStore(self.db)

    async def until(self, check: Callable[[], bool]) -> float:
        started = time.monotonic()
        async with asyncio.timeout(GIVE_UP_S):
            while not check():
                seen = self.applied
                async with self.cond:
                    await self.cond.wait_for(lambda n=seen: self.applied > n)
        return time.monotonic() - started


@pytest.fixture
async def nodes():
    with fresh_database() as dsn:
        a, b = Node(dsn), Node(dsn)
        for n in (a, b):
            await follow(n.db, (n.keys, n.access))
        try:
            yield a, b
        finally:
            for n in (a, b):
                await n.db.stop_listening()
                n.db.close()


async def test_access_settings_reach_the_other_node(nodes):
    a, b = nodes
    took = {}
    key = await a.keys.create("bob's", "bob")
    took["key owner"] = await b.until(lambda: b.keys.owner(key["id"]) == "bob")
    await a.access.created("shared", "bob", "public-read")
    took["bucket"] = await b.until(lambda: b.access.get("shared").owner == "bob")
    assert b.access.get("shared").acl == "public-read"
    policy = '{"Statement": []}'
    await a.access.update("shared", policy=policy, cors=({"origins": ["*"], "methods": ["GET"],
                                                          "headers": [], "expose": []},),
                          block={"BlockPublicAcls": True})
    took["settings"] = await b.until(lambda: b.access.get("shared").policy == policy)
    assert b.access.get("shared").cors[0]["origins"] == ["*"]
    assert b.access.get("shared").blocks("BlockPublicAcls")
    await a.access.set_object_acl("shared", "k/1", "public-read")
    took["object acl"] = await b.until(lambda: b.access.object_acl("shared", "k/1") ==
                                       "public-read")
    await a.access.set_object_acl("shared", "k/1", "private")
    took["object acl reset"] = await b.until(lambda: b.access.object_acl("shared", "k/1") ==
                                             "private")
    await a.access.set_object_acl("shared", "k/2", "public-read")
    await b.until(lambda: b.access.object_acl("shared", "k/2") == "public-read")
    await a.access.forget("shared")
    took["forget"] = await b.until(lambda: b.access.get("shared").owner == "dayfly"
                                   and b.access.object_acl("shared", "k/2") == "private")
    assert max(took.values()) < APPLIED_WITHIN_S, took
