"""This node's share of a concurrency limit that holds across every live node of a cluster.

A limit (a function's reserved concurrency or MaxInstances) of L over n live nodes: each node
may run L // n instances, and the L % n left over go one each to the nodes with the lowest ids,
so the shares add up to L exactly and every node computes the same split from the same member
list, without asking anyone. One node (single-node mode) is n = 1: the share is the limit.
A rate (a route's rate_limit: requests a second and a burst) is split evenly, a request a
second needing no whole units; a node's burst is at least one request, else it could admit none.
While membership changes, two nodes may briefly disagree on n (each learns of a join or a death
from its own watch, within a heartbeat); the limit then holds again once both have seen it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Share(NamedTuple):
    """Where this node sits among the live nodes: its rank by id, and how many there are."""

    rank: int = 0
    nodes: int = 1

    @classmethod
    def among(cls, ids: Iterable[str], me: str) -> Share:
        """The share of node `me` among the live nodes `ids` (`me` is counted even if absent)."""
        ranked = sorted({*ids, me})
        return cls(ranked.index(me), len(ranked))

    def of(self, limit: int) -> int:
        """This node's part of `limit`: floor, plus one of the remainder for the lowest ids."""
        base, extra = divmod(max(limit, 0), self.nodes)
        return base + (1 if self.rank < extra else 0)

    def rate(self, rps: float, burst: float) -> tuple[float, float]:
        """This node's part of a rate of `rps` requests a second with bursts of `burst`."""
        return rps / self.nodes, max(1.0, burst / self.nodes)


def shares(limit: int, ids: Iterable[str]) -> dict[str, int]:
    """Every node's part of `limit` (they add up to it)."""
    ranked = sorted(set(ids))
    return {node: Share(i, len(ranked)).of(limit) for i, node in enumerate(ranked)}
