"""The cluster as `/metrics` and the dashboard show it: live nodes (from membership's memory,
one node: itself), where each function's warm instances are, forwarded invokes by outcome and
the queue's depth per stream. Nothing here touches the network or the database."""

from __future__ import annotations

from typing import Any

from ..stores.queue import QueueSummary
from .text import Exposition


def nodes(platform: Any) -> list[dict[str, Any]]:
    """Every live node as membership last heard it, this one first."""
    me = platform.membership.node_id
    return [{"id": n.id, "address": n.address, "self": n.id == me, "running": n.running,
             "capacity": n.capacity, "warm": dict(n.warm), "tiers": list(n.tiers),
             "version": n.version, "last_heartbeat": n.last_heartbeat, "age_s": n.age_s}
            for n in platform.membership.peers()]


def forwarded(platform: Any) -> dict[str, int]:
    """Sync invokes this node forwarded, by outcome (all peers together)."""
    out: dict[str, int] = {}
    for (_peer, outcome), n in platform.metrics.forwards.items():
        out[outcome] = out.get(outcome, 0) + n
    return out


def streams(q: QueueSummary) -> dict[str, int]:
    """Messages per queue stream: events waiting or in delivery, and dead letters."""
    return {"events": sum(q.events.values()), "dlq": sum(q.dead.values())}


def expose(out: Exposition, platform: Any, q: QueueSummary) -> None:
    """The cluster's families of `/metrics`."""
    live = nodes(platform)
    out.simple("dayfly_cluster_nodes", "gauge", "Live nodes of the cluster (one node: 1).",
               [({"cluster": platform.membership.cluster or ""}, len(live))])
    out.simple("dayfly_node_info", "gauge",
               "A live node (1), its advertise address and version; self=\"true\" is this node.",
               [({"node": n["id"], "address": n["address"], "version": n["version"],
                  "self": "true" if n["self"] else "false"}, 1) for n in live])
    out.simple("dayfly_node_running_invocations", "gauge",
               "Invocations running on each live node (its last heartbeat).",
               [({"node": n["id"]}, n["running"]) for n in live])
    out.simple("dayfly_node_capacity_instances", "gauge",
               "Instances each live node is willing to run at once.",
               [({"node": n["id"]}, n["capacity"]) for n in live])
    out.simple("dayfly_node_heartbeat_age_seconds", "gauge",
               "Seconds since this node last heard each live node (0 for itself).",
               [({"node": n["id"]}, n["age_s"]) for n in live])
    out.simple("dayfly_node_last_heartbeat_timestamp_seconds", "gauge",
               "When each live node sent its last heartbeat (its own clock, Unix time).",
               [({"node": n["id"]}, round(n["last_heartbeat"], 3)) for n in live])
    out.simple("dayfly_node_warm_instances", "gauge",
               "Idle (warm) instances of each function on each live node, as advertised.",
               [({"node": n["id"], "function": f}, k)
                for n in live for f, k in sorted(n["warm"].items())])
    out.simple("dayfly_queue_stream_messages", "gauge",
               "Messages in each queue stream: events (waiting or in delivery) and dlq "
               "(dead letters).", [({"stream": s}, k) for s, k in streams(q).items()])
