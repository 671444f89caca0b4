"""Sync invokes run where there is room: choosing a peer and relaying the invoke to it.

A node that receives a RequestResponse invoke runs it itself when the function's pool has an
idle instance or room to start one (`Scheduler.has_room`: memory only, no network). Otherwise
the Forwarder picks a live peer with room, preferring peers that advertise idle instances of
the function, relays the request to the peer's advertise URL over a kept-alive connection
(relay.py) with a node credential (credential.py), and passes the reply back unchanged
(status, X-Amz-Function-Error, X-Amz-Log-Result, body). If no peer has room, or the chosen one
cannot be reached or does not know the function yet, the request queues here as on one node.
One hop at most: a forwarded request runs, queues or is refused (429) where it lands.

The Forwarder also keeps this node's share of every concurrency limit (scheduler/share.py) in
step with the live nodes. cluster/wiring.py builds it (LOCAL_ONLY on one node).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from starlette.responses import Response

from ..errors import ClientGone, ServiceError
from ..scheduler.share import Share
from ..types import FunctionSpec
from .credential import FORWARDED, NodeKey
from .relay import Relay, Reply, Unreachable

log = logging.getLogger("dayfly.cluster")

_RELAYED = ("x-amz-invocation-type", "x-amz-log-type", "x-amz-client-context", "traceparent",
            "x-amzn-trace-id")
AVOID_S = 5.0  # a peer that could not be reached is not chosen again for this long
# hop-by-hop or recomputed for the reply to our own caller
_DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date",
                      "server"})


class Node(Protocol):
    """What a node advertises (cluster/membership.py's NodeInfo), as far as forwarding reads it."""

    @property
    def id(self) -> str: ...
    @property
    def address(self) -> str: ...  # its advertise URL, http://host:port
    @property
    def warm(self) -> Mapping[str, int]: ...  # idle instances by function
    @property
    def load(self) -> tuple[int, int]: ...  # (invocations running, instances it will run)


class Members(Protocol):
    """The membership seam: live nodes, from memory (a KV watch keeps them current)."""

    def peers(self) -> Iterable[Node]: ...


def invoke_target(name: str, qualifier: str | None) -> str:
    path = f"/2015-03-31/functions/{quote(name, safe=':')}/invocations"
    return path + (f"?Qualifier={quote(qualifier, safe='')}" if qualifier else "")


def choose(peers: Iterable[Node], ids: tuple[str, ...], function: str, limit: int,
           sending: Mapping[str, int]) -> Node | None:
    """The peer to run an invocation of `function` (limit: its concurrency limit): among peers
    whose share of the limit is not 0, the one with the most idle instances of it left (after
    the requests already sent its way), else the least loaded one with room; None if none.
    `ids`: every live node, sorted (the shares are computed from it)."""
    best: Node | None = None
    best_key: tuple[int, float] = (2, 0.0)
    for peer in peers:
        if peer.id not in ids or Share(ids.index(peer.id), len(ids)).of(limit) <= 0:
            continue
        busy = sending.get(peer.id, 0)
        idle = peer.warm.get(function, 0) - busy
        if idle > 0:
            key = (0, float(-idle))
        else:
            running, capacity = peer.load
            if capacity > 0 and running + busy >= capacity:
                continue
            key = (1, (running + busy) / capacity if capacity > 0 else running + busy)
        if key < best_key:
            best, best_key = peer, key
    return best


class Outcomes(Protocol):
    """Where forwarded invokes are counted (metrics/observer.py's Metrics)."""

    def forwarded(self, peer: str, outcome: str) -> None: ...


class LocalOnly:
    """Single-node: nothing is forwarded, and no node credential is valid."""

    def start(self) -> None:
        return None

    def choose(self, spec: FunctionSpec) -> Node | None:
        return None

    def verify(self, credential: str, method: str, target: str) -> str | None:
        return None

    async def forward(self, peer: Node, name: str, qualifier: str | None,
                      headers: Mapping[str, str], body: bytes, spec: FunctionSpec,
                      gone: Callable[[], Awaitable[object]] | None = None) -> Response | None:
        return None

    async def close(self) -> None:
        return None


LOCAL_ONLY = LocalOnly()


class Forwarder(LocalOnly):
    """Cluster: picks peers, relays invokes to them, checks their credentials; keeps this node's
    concurrency shares in step with the live nodes. Event loop only: `sending` counts requests
    in flight to each peer, `avoid` the peers not to choose for now, `peers` (live, not avoided)
    and `ids` (all live, for the shares) the last membership seen."""

    def __init__(self, members: Members, node: str, key: bytes, scheduler: Any,
                 metrics: Outcomes, *, queue_timeout_s: float = 10.0,
                 refresh_s: float = 0.25) -> None:
        self.members = members
        self.node = node
        self.key = NodeKey(key, node)
        self.scheduler = scheduler
        self.metrics = metrics
        self.queue_timeout_s = queue_timeout_s
        self.refresh_s = refresh_s
        self.peers: list[Node] = []
        self.ids: tuple[str, ...] = (node,)
        self.sending: dict[str, int] = {}
        self.avoid: dict[str, float] = {}  # peer -> monotonic time until which it is not chosen
        self.relay = Relay()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.refresh()
        self._task = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.relay.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                self.refresh()
            except Exception:
                log.exception("forwarding: reading the live nodes failed")

    def refresh(self) -> None:
        """Read the live nodes; when they changed, this node's shares change with them. A peer
        found unreachable is not chosen for AVOID_S (it still counts in the shares: it may be
        running its part)."""
        now = time.monotonic()
        live = [p for p in self.members.peers() if p.id != self.node]
        ids = tuple(sorted({self.node, *(p.id for p in live)}))
        self.peers = [p for p in live if self.avoid.get(p.id, 0.0) <= now]
        if ids != self.ids:
            self.ids = ids
            log.info("cluster: %d live node(s); concurrency shares recomputed", len(ids))
        self.scheduler.reshare(Share(ids.index(self.node), len(ids)))

    def choose(self, spec: FunctionSpec) -> Node | None:
        return choose(self.peers, self.ids, spec.name, spec.max_instances, self.sending)

    def verify(self, credential: str, method: str, target: str) -> str | None:
        return self.key.verify(credential, method, target)

    async def forward(self, peer: Node, name: str, qualifier: str | None,
                      headers: Mapping[str, str], body: bytes, spec: FunctionSpec,
                      gone: Callable[[], Awaitable[object]] | None = None) -> Response | None:
        """Run the invocation on `peer`; its reply, or None if nothing ran there (the peer could
        not be reached, or does not know the function yet): the caller runs it here."""
        target = invoke_target(name, qualifier)
        out = [(k, v) for k in _RELAYED if (v := headers.get(k))]
        out += [("content-type", "application/json"), (FORWARDED, self.node),
                ("authorization", self.key.sign("POST", target, body, peer.id))]
        # the peer may queue it: its whole wait, the run, and a margin for the relay
        timeout = self.queue_timeout_s + spec.limits.timeout_s + 5.0
        self.sending[peer.id] = self.sending.get(peer.id, 0) + 1
        try:
            sent = self.relay.request(peer.address, "POST", target, out, body, timeout)
            reply = await (sent if gone is None else _unless_gone(sent, gone, spec.name))
        except Unreachable as exc:
            log.warning("forwarding %s to %s failed, running it here (and not sending it more "
                        "for %.0f s): %s", spec.name, peer.id, AVOID_S, exc)
            self.metrics.forwarded(peer.id, "unreachable")
            self.avoid[peer.id] = time.monotonic() + AVOID_S
            self.peers = [p for p in self.peers if p.id != peer.id]
            return None
        except (OSError, TimeoutError) as exc:  # Broken is a ConnectionError
            self.metrics.forwarded(peer.id, "failed")
            raise ServiceError(f"node {peer.id} did not answer the invocation of {spec.name} "
                               f"it was forwarded: {exc or type(exc).__name__}") from None
        finally:
            self.sending[peer.id] -= 1
        if reply.status == 404:  # the peer has not heard of this deploy yet: nothing ran there
            self.metrics.forwarded(peer.id, "not_found")
            return None
        self.metrics.forwarded(peer.id, _outcome(reply))
        response = Response(reply.body, reply.status)
        response.raw_headers = [*((k.encode("latin-1"), v.encode("latin-1"))
                                  for k, v in reply.headers if k not in _DROPPED),
                                (b"content-length", str(len(reply.body)).encode())]
        return response


async def _unless_gone(sent: Awaitable[Reply], gone: Callable[[], Awaitable[object]],
                       name: str) -> Reply:
    """The peer's reply; if our caller hangs up first, the relay is cancelled (its connection
    closed, so the peer drops the request if it is still queued) and ClientGone raised."""
    task = asyncio.current_task()
    assert task is not None
    hung_up = False

    def cancel(watch: asyncio.Future) -> None:
        nonlocal hung_up
        if not watch.cancelled():
            hung_up = True
            task.cancel()

    watch = asyncio.ensure_future(gone())  # one task, not two: the relay runs in this one
    watch.add_done_callback(cancel)
    try:
        return await sent
    except asyncio.CancelledError:
        if hung_up and task.uncancel() == 0:
            raise ClientGone(f"the caller of {name} hung up while it ran on another node"
                             ) from None
        raise
    finally:
        watch.remove_done_callback(cancel)
        watch.cancel()


def _outcome(reply: Reply) -> str:
    if reply.status == 200:
        return "function_error" if reply.header("x-amz-function-error") else "ok"
    return "throttled" if reply.status == 429 else f"http_{reply.status}"
