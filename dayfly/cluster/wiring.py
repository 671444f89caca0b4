"""The one place that knows which mode a node runs in: it builds the backends of every axis
from Settings (single node: SQLite, in-process leases, itself as the only member; a cluster:
PostgreSQL, advisory-lock leases, NATS KV membership), so nothing above asks."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable

import psycopg

from .. import __version__
from ..config import Settings
from ..control.bundles import BundleStore
from ..control.deps import DepsInstaller
from ..control.shared_code import OnDisk, SharedCode
from ..stores.db import Database
from ..stores.objects import ObjectStore
from ..stores.queue import EventQueue, Queue
from .forward import LOCAL_ONLY, Forwarder, LocalOnly
from .leases import InProcessLeases, Leases, PostgresLeases
from .membership import Advert, LocalMembership, Membership, NatsMembership, NodeInfo
from .nats import Nats
from .settings import ClusterError, ClusterSettings

CONNECT_TIMEOUT_S = 5


def check_services(cluster: ClusterSettings) -> None:
    """Refuse to start, with one clear line, when PostgreSQL or NATS cannot be reached."""
    try:
        with psycopg.connect(cluster.database, connect_timeout=CONNECT_TIMEOUT_S):
            pass
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterError(f"cannot reach PostgreSQL at {_masked(cluster.database)}: "
                           f"{first}") from None

    async def probe() -> None:
        n = await Nats.connect(cluster)
        try:
            await n.js.account_info()
        except Exception as exc:
            raise ClusterError(f"NATS at {cluster.nats} has no JetStream (start nats-server "
                               f"with -js): {exc or type(exc).__name__}") from None
        finally:
            await n.close()
    asyncio.run(probe())


def _masked(dsn: str) -> str:
    """A DSN without its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the given DSN"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **info)


def database(settings: Settings) -> Database:
    """SQLite in the data dir, or the cluster's PostgreSQL database."""
    if settings.cluster is None:
        return Database(settings.db_path)
    from ..stores.pg import PostgresDatabase

    return PostgresDatabase(settings.cluster.database, node_id=settings.cluster.node_id)


def key_material(settings: Settings) -> dict[str, bytes | None]:
    """Registry keyword arguments: keys derived from the cluster key (None: the node's files)."""
    c = settings.cluster
    return {"secrets_key": c.derive("secrets") if c else None,
            "master_key": c.derive("function keys") if c else None}


def node_identity(settings: Settings) -> tuple[str, str]:
    """(node id, advertise URL) of this node."""
    if settings.cluster is not None:
        return settings.cluster.node_id, settings.cluster.advertise
    return f"{socket.gethostname()}-{settings.port}", f"http://{settings.endpoint}"


def scheduler_advert(settings: Settings, scheduler: Callable[[], object]) -> Advert:
    """The node's advert, read from the scheduler's pools when a heartbeat is sent."""
    node_id, address = node_identity(settings)
    started = time.time()

    def advert() -> NodeInfo:
        sched = scheduler()
        warm: dict[str, int] = {}
        running = 0
        for (name, _version), pool in list(getattr(sched, "current", {}).items()):
            if pool.idle:
                warm[name] = warm.get(name, 0) + len(pool.idle)
            running += len(pool.busy)
        return NodeInfo(id=node_id, address=address,
                        tiers=sorted(getattr(sched, "sandboxes", {})), running=running,
                        capacity=(os.cpu_count() or 1) * 8, warm=warm,
                        version=__version__, started=started, last_heartbeat=time.time())
    return advert


class Cluster:
    """The leases, membership and NATS connection of one node (None in single-node mode)."""

    def __init__(self, settings: Settings, advert: Advert) -> None:
        c = settings.cluster
        self.settings = c
        self.node_id = c.node_id if c else ""  # written into every record ("" on one node)
        self.nats: Nats | None = Nats(c) if c else None
        self.leases: Leases = PostgresLeases(c.database, c.name) if c else InProcessLeases()
        self.membership: Membership = (NatsMembership(advert, self.nats) if self.nats
                                       else LocalMembership(advert))
        self._starting: list[Callable[[], Awaitable[None]]] = []  # once NATS is connected
        self._closing: list[Callable[[], Awaitable[None]]] = []  # before NATS closes

    def code(self) -> SharedCode:
        """Where code bundles and dependency sets are shared: nowhere, or `{cluster}_code`."""
        if self.nats is None:
            return SharedCode()
        from ..control.shared_code import JetStreamCode

        code = JetStreamCode(self.nats.nc, self.nats.name("code"))
        self._starting.append(code.start)
        return code

    def prepare(self, bundles: BundleStore, deps: DepsInstaller) -> OnDisk | None:
        """The sandboxes' hook before a start: fetch code deployed through another node, once
        (one node: none, its code is always on its disk)."""
        return OnDisk(bundles, deps) if self.nats is not None else None

    def share_objects(self, objects: ObjectStore) -> None:
        """S3 object data: this node's files on one node; in a cluster, JetStream's
        `{cluster}_objects` (every node serves every object), the node's files as its cache."""
        if self.nats is None:
            return
        from ..stores.jsblobs import JetStreamBlobStore

        blobs = JetStreamBlobStore(objects.blobs.root, self.nats.nc, self.nats.name("objects"))
        objects.use_blobs(blobs)
        self._starting.append(blobs.start)
        self._closing.append(blobs.close)

    def queue(self, db: Database) -> Queue:
        """The durable event queue: SQLite's table, or a JetStream stream of this cluster."""
        if self.nats is None:
            return EventQueue(db)
        from ..stores.jsqueue import JetStreamQueue

        return JetStreamQueue(self.nats.js, self.nats.cluster,
                              ack_wait_s=self.settings.ack_wait_s)  # type: ignore[union-attr]

    def forwarder(self, scheduler: object, metrics: object,
                  queue_timeout_s: float) -> LocalOnly:
        """Where sync invokes without room here go: nowhere on one node, a peer in a cluster."""
        if self.settings is None:
            return LOCAL_ONLY
        return Forwarder(self.membership, self.settings.node_id,
                         self.settings.derive("node-to-node"), scheduler, metrics,  # type: ignore[arg-type]
                         queue_timeout_s=queue_timeout_s)

    async def connect(self) -> None:
        """Open the NATS connection and start what this wiring built on it (shared code)."""
        if self.nats is not None:
            await self.nats.open()
        for start in self._starting:
            await start()

    async def start(self) -> None:
        """Take leases and join the cluster (once the node can do the work)."""
        await self.leases.start()
        await self.membership.start()

    async def leave(self) -> None:
        """Tell the other nodes this one is going (before its work stops)."""
        await self.membership.close()

    async def close(self) -> None:
        for close in reversed(self._closing):
            await close()
        await self.leases.close()
        if self.nats is not None:
            await self.nats.close()
