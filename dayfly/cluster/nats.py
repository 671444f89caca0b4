"""The node's one NATS connection and JetStream context, shared by every cluster backend (the
queue, blobs, membership, forwarding): backends receive it and never open their own."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.js import JetStreamContext

from .settings import ClusterError, ClusterSettings

log = logging.getLogger("dayfly.cluster")
CONNECT_TIMEOUT_S = 5


class Nats:
    """`nc` (core NATS), `js` (JetStream); names of streams/buckets/subjects carry the cluster
    name, so two clusters (or two tests) share one NATS server without meeting."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.cluster = settings.name
        # made now, connected by `open`: backends are built with them before the node starts
        self.nc = Client()
        self.js: JetStreamContext = self.nc.jetstream()

    @classmethod
    async def connect(cls, settings: ClusterSettings) -> Nats:
        """A connected Nats (see `open`)."""
        n = cls(settings)
        await n.open()
        return n

    async def open(self) -> None:
        """Connect (reconnecting forever once connected); a ClusterError if NATS is not there.
        Backends are built with this object before it is open, and use it from their start."""
        settings = self.settings
        nc = self.nc

        async def disconnected() -> None:
            if not (nc.is_closed or nc.is_draining):
                log.warning("NATS: disconnected from %s; reconnecting", settings.nats)

        async def reconnected() -> None:
            log.info("NATS: reconnected")

        async def error(exc: Exception) -> None:
            log.debug("NATS: %s", exc)

        try:
            # with unlimited reconnects the first connect would retry forever: bound it
            await asyncio.wait_for(self.nc.connect(
                settings.nats_servers, name=f"dayfly {settings.node_id}",
                connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=1,
                disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error),
                CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise ClusterError(f"cannot reach NATS at {settings.nats} (no answer within "
                               f"{CONNECT_TIMEOUT_S:g}s)") from None
        except Exception as exc:  # nats-py raises OSError, timeouts and its own kinds
            raise ClusterError(f"cannot reach NATS at {settings.nats}: "
                               f"{exc or type(exc).__name__}") from None


    def name(self, kind: str) -> str:
        """A stream, KV bucket or object store name of this cluster: `{cluster}_{kind}`."""
        return f"{self.cluster}_{kind}"

    def subject(self, *parts: str) -> str:
        """A subject of this cluster: `{cluster}.part1.part2`."""
        return ".".join((self.cluster, *parts))

    async def close(self) -> None:
        nc = self.nc
        if nc.is_connected or nc.is_reconnecting:
            try:
                await asyncio.wait_for(nc.drain(), 5.0)
            except Exception:  # closing on shutdown: whatever NATS says, we are leaving
                await nc.close()
