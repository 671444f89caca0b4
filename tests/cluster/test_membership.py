"""Membership on a real 3-node cluster: every node lists all of them (API and `dayfly nodes`),
a node killed with -9 is gone from the others' lists within 5 s, and a restarted one rejoins."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time

import httpx
import pytest
from cluster_helpers import poll, three_nodes
from nats_helpers import NATS_URL, drop_nats, require_nats

from dayfly.cluster.membership import LocalMembership, NatsMembership, NodeInfo
from dayfly.cluster.nats import Nats
from dayfly.cluster.settings import ClusterSettings

GONE_WITHIN_S = 5.0
cluster3 = pytest.fixture(scope="module")(three_nodes)


def cli_nodes(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dayfly.cli.main", "nodes", "--endpoint", url,
                           *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "COLUMNS": "200"})


def test_every_node_lists_the_three_nodes(cluster3):
    ids = sorted(cluster3.node_id(i) for i in range(3))
    for i in range(3):
        assert poll(lambda i=i: cluster3.live(i) == ids, 10), cluster3.live(i)
    out = cli_nodes(cluster3.node(0).url, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["cluster"] == cluster3.name
    by_id = {n["id"]: n for n in data["nodes"]}
    assert sorted(by_id) == ids and by_id["node0"]["self"] and not by_id["node1"]["self"]
    for i in range(3):
        node = by_id[cluster3.node_id(i)]
        assert node["address"] == cluster3.node(i).url
        assert node["tiers"] and node["capacity"] > 0 and node["age_s"] < 5
    table = cli_nodes(cluster3.node(1).url)
    assert table.returncode == 0, table.stderr
    assert all(cluster3.node_id(i) in table.stdout for i in range(3)), table.stdout
    assert f"3 nodes in cluster {cluster3.name}" in table.stderr  # the note goes to stderr


def test_a_killed_node_is_gone_within_5s_and_rejoins_after_a_restart(cluster3):
    ids = sorted(cluster3.node_id(i) for i in range(3))
    assert poll(lambda: cluster3.live(0) == ids and cluster3.live(1) == ids, 10)
    cluster3.kill(2)
    killed = time.monotonic()
    rest = ["node0", "node1"]
    gone = poll(lambda: cluster3.live(0) == rest and cluster3.live(1) == rest, GONE_WITHIN_S)
    took = time.monotonic() - killed
    assert gone, (cluster3.live(0), cluster3.live(1))
    assert took <= GONE_WITHIN_S
    # a secret sealed meanwhile through another node opens on the restarted one: every node
    # seals with the cluster key (with its own secrets.key it would refuse to start)
    r = httpx.put(f"{cluster3.node(0).url}/dayfly/v1/secrets/SHARED_TOKEN", json={"value": "s3"})
    assert r.status_code == 204, r.text
    cluster3.restart(2)
    assert poll(lambda: all(cluster3.live(i) == ids for i in range(3)), 10), [
        cluster3.live(i) for i in range(3)]
    names = [s["name"] for s in httpx.get(f"{cluster3.node(2).url}/dayfly/v1/secrets").json()[
        "secrets"]]
    assert "SHARED_TOKEN" in names


# -- the backends directly, without servers ------------------------------------------------

def advert(node_id: str, warm: dict[str, int] | None = None):
    return lambda: NodeInfo(id=node_id, address=f"http://{node_id}", tiers=["process"],
                            warm=dict(warm or {}))


def test_a_single_node_is_its_only_member():
    m = LocalMembership(advert("solo", {"f": 2}))
    assert [n.id for n in m.peers()] == ["solo"] and m.others() == []
    assert m.peers()[0].warm == {"f": 2} and m.cluster is None


def test_nodes_see_each_other_and_one_that_leaves_or_falls_silent_is_dropped():
    require_nats()
    name = f"m{secrets.token_hex(5)}"
    try:
        asyncio.run(three_members(name))
    finally:
        drop_nats(name)


async def three_members(name: str) -> None:
    conns = [Nats(ClusterSettings("unused", NATS_URL, b"k" * 32, name=name, node_id=i))
             for i in ("a", "b", "c")]
    members = [NatsMembership(advert(n.settings.node_id, {"fn": 1}), n, heartbeat_s=0.2,
                              stale_s=1.0) for n in conns]
    try:
        for n, m in zip(conns, members, strict=True):
            await n.open()
            await m.start()

        async def ids(m: NatsMembership, want: list[str], timeout: float = 5.0) -> list[str]:
            deadline = asyncio.get_running_loop().time() + timeout
            while sorted(n.id for n in m.peers()) != want:
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
            return sorted(n.id for n in m.peers())
        assert await ids(members[0], ["a", "b", "c"]) == ["a", "b", "c"]
        assert {n.id: n.warm for n in members[0].others()} == {"b": {"fn": 1}, "c": {"fn": 1}}
        await members[2].close()  # leaves: its entry is deleted, gone at once
        assert await ids(members[0], ["a", "b"], 0.5) == ["a", "b"]
        for task in members[1]._tasks:  # falls silent (as a killed node): dropped after stale_s
            task.cancel()
        assert await ids(members[0], ["a"], 3.0) == ["a"]
    finally:
        for m in members:
            await m.close()
        for n in conns:
            await n.close()
