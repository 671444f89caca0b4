"""Membership: which nodes are alive, where they are, and what they hold warm.

    LocalMembership   one node: itself
    NatsMembership    a cluster: each node puts its advert in the KV bucket `{cluster}_nodes`
                      every HEARTBEAT_S (the bucket's TTL drops a silent node's entry) and
                      watches the bucket; `peers()` is served from memory, no network

A node that stops cleanly deletes its entry (gone at once); one that dies is dropped when its
last heartbeat is older than STALE_S, measured on this node's clock at arrival (KV expiry is
not announced to watchers, and clocks of two machines differ).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from ..background import spawn
from .nats import Nats

log = logging.getLogger("dayfly.cluster.membership")

HEARTBEAT_S = 1.0
STALE_S = 3.0  # no heartbeat for this long: the node is gone (within the promised 5 s)
TTL_S = 5.0  # the KV bucket's max age: entries of dead nodes leave the bucket


@dataclass(slots=True)
class NodeInfo:
    """One node's advert (what it sends every heartbeat)."""

    id: str
    address: str  # the advertise URL: where other nodes reach its gateway
    tiers: list[str] = field(default_factory=list)
    running: int = 0  # invocations running now
    capacity: int = 0  # instances it is willing to run at once
    warm: dict[str, int] = field(default_factory=dict)  # function -> idle instances
    version: str = ""
    started: float = 0.0  # wall clock, when the node started
    last_heartbeat: float = 0.0  # wall clock of the sender, when this advert was sent
    age_s: float = 0.0  # seconds since this node last heard it (filled in by peers())

    @property
    def load(self) -> tuple[int, int]:
        return self.running, self.capacity

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


Advert = Callable[[], NodeInfo]  # the node's current advert, built by the wiring


class Membership:
    """The seam: `peers()` lists live nodes (this one included), from memory."""

    cluster: str | None = None  # the cluster's name (None: a single node)

    def __init__(self, advert: Advert) -> None:
        self.advert = advert

    @property
    def node_id(self) -> str:
        return self.advert().id

    async def start(self) -> None:
        """Join the cluster."""

    def peers(self) -> list[NodeInfo]:
        return [self._self()]

    def others(self) -> list[NodeInfo]:
        """Live nodes other than this one."""
        me = self.node_id
        return [n for n in self.peers() if n.id != me]

    def _self(self) -> NodeInfo:
        info = self.advert()
        info.last_heartbeat = time.time()
        return info

    async def close(self) -> None:
        """Leave the cluster."""


class LocalMembership(Membership):
    """A single node: the only member is itself."""


def kv_key(node_id: str) -> str:
    """A KV key for a node id (KV keys allow letters, digits, `-_=/.`)."""
    return re.sub(r"[^A-Za-z0-9_=.-]", "_", node_id)


class NatsMembership(Membership):
    """Heartbeats into `{cluster}_nodes`; a watch of the bucket keeps `nodes` current.
    `nodes` (key -> (advert, monotonic arrival time)) is event-loop state."""

    def __init__(self, advert: Advert, nats: Nats, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_s: float = STALE_S) -> None:
        super().__init__(advert)
        self.nats = nats
        self.cluster = nats.cluster
        self.bucket_name = nats.name("nodes")
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.nodes: dict[str, tuple[NodeInfo, float]] = {}
        self._kv: Any = None
        self._watcher: Any = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        from nats.js.api import KeyValueConfig, StorageType

        js = self.nats.js
        try:
            self._kv = await js.key_value(self.bucket_name)
        except Exception:  # not there yet: the first node creates it (the same config on all)
            self._kv = await js.create_key_value(KeyValueConfig(
                bucket=self.bucket_name, history=1, ttl=TTL_S, storage=StorageType.MEMORY,
                description="dayfly cluster membership: one advert per live node"))
        await self._beat()  # visible before the node serves
        self._watcher = await self._kv.watchall()
        self._tasks = [spawn(self._watch()), spawn(self._heartbeats())]

    async def _beat(self) -> None:
        info = self._self()
        await self._kv.put(kv_key(info.id), orjson.dumps(info.to_json()))
        self.nodes[kv_key(info.id)] = (info, time.monotonic())

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._beat()
            except Exception as exc:  # NATS away: keep trying; peers see us go, then return
                log.warning("membership: heartbeat failed: %s", exc or type(exc).__name__)

    async def _watch(self) -> None:
        async for entry in self._watcher:
            if entry is None:  # the end of what the bucket held when the watch began
                continue
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                self.nodes.pop(entry.key, None)
                continue
            try:
                info = NodeInfo.from_json(orjson.loads(entry.value))
            except (orjson.JSONDecodeError, TypeError):
                log.warning("membership: ignoring a malformed advert under %s", entry.key)
                continue
            self.nodes[entry.key] = (info, time.monotonic())

    def peers(self) -> list[NodeInfo]:
        now = time.monotonic()
        me = kv_key(self.node_id)
        out = []
        for key, (info, seen) in list(self.nodes.items()):
            if key == me:
                continue
            if now - seen > self.stale_s:
                del self.nodes[key]
                continue
            info.age_s = round(now - seen, 3)
            out.append(info)
        return [self._self(), *sorted(out, key=lambda n: n.id)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()
        if self._kv is not None:
            with contextlib.suppress(Exception):  # leave at once, not after STALE_S
                await self._kv.delete(kv_key(self.node_id))
