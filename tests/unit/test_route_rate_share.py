"""A route's rate limit holds across the cluster (scheduler/share.py, gateway/routes.py): each of
n live nodes admits its share, rps/n a second in bursts of burst/n (at least one), so together
they admit the route's rate; one node alone admits all of it."""

from __future__ import annotations

import pytest

from dayfly.gateway.routes import Bucket
from dayfly.gateway.routes_table import _rate
from dayfly.scheduler.share import Share


def admitted(share: Share, rate: dict[str, float], asked: int) -> int:
    """How many of `asked` requests at once one node's bucket for this route lets through."""
    bucket = Bucket(*share.rate(rate["rps"], rate["burst"]))
    return sum(1 for _ in range(asked) if not bucket.take())


@pytest.mark.parametrize(("nodes", "each"), [(1, 12), (2, 6), (3, 4), (4, 3)])
def test_the_nodes_of_a_cluster_admit_the_routes_burst_together(nodes, each):
    rate = _rate({"rps": 0.001, "burst": 12}, "")  # no refill within the test
    ids = [f"node{i}" for i in range(nodes)]
    got = [admitted(Share.among(ids, me), rate, 50) for me in ids]
    assert got == [each] * nodes and sum(got) == 12


def test_the_rate_is_split_evenly_and_adds_up():
    ids = ["a", "b", "c"]
    parts = [Share.among(ids, me).rate(50, 100) for me in ids]
    assert sum(rps for rps, _ in parts) == pytest.approx(50)
    assert sum(burst for _, burst in parts) == pytest.approx(100)


def test_one_node_keeps_the_whole_rate_and_a_burst_never_drops_below_one():
    assert Share().rate(50, 100) == (50, 100)
    rps, burst = Share.among(["a", "b", "c", "d"], "a").rate(2, 2)  # a burst of 2 over 4
    assert rps == 0.5 and burst == 1.0  # every node can still admit a request
