"""Cluster forwarding's decisions (dayfly/cluster/forward.py, dayfly/scheduler/share.py): each
node's share of a concurrency limit, which peer runs an invocation this node has no room for,
and the node-to-node credential."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

from dayfly.cluster.credential import FORWARDED, NodeKey, body_matches, inbound, parse
from dayfly.cluster.forward import choose, invoke_target
from dayfly.errors import Forbidden, TooManyRequests
from dayfly.sandbox.safe import SafeSandbox
from dayfly.scheduler.scheduler import Scheduler
from dayfly.scheduler.share import Share, shares
from dayfly.testing.stub import StubBackend
from dayfly.types import FunctionSpec, InvokeRequest, Limits

KEY = bytes(range(32))

# -- shares ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "nodes", "expected"), [
    (10, ["a"], [10]),
    (10, ["a", "b"], [5, 5]),
    (10, ["a", "b", "c"], [4, 3, 3]),
    (2, ["c", "a", "b"], [1, 1, 0]),  # by id, not by the order given
    (1, ["b", "a"], [1, 0]),
    (0, ["a", "b"], [0, 0]),
    (64, [f"n{i}" for i in range(7)], [10, 9, 9, 9, 9, 9, 9]),
])
def test_shares_add_up_to_the_limit_remainder_to_the_lowest_ids(limit, nodes, expected):
    got = shares(limit, nodes)
    assert [got[n] for n in sorted(nodes)] == expected
    assert sum(got.values()) == limit
    for n in nodes:
        assert Share.among(nodes, n).of(limit) == got[n]


def test_one_node_has_the_whole_limit():
    assert Share().of(7) == 7 and Share.among([], "me").of(7) == 7


# -- peer choice ----------------------------------------------------------------------------


@dataclass
class Peer:
    id: str
    address: str = "http://127.0.0.1:1"
    warm: dict[str, int] = field(default_factory=dict)
    load: tuple[int, int] = (0, 8)


def test_a_peer_with_idle_instances_of_the_function_is_preferred():
    busy = Peer("b", load=(1, 8))
    idle_other = Peer("c", warm={"g": 5})
    warm = Peer("d", warm={"f": 1}, load=(6, 8))
    ids = ("a", "b", "c", "d")
    assert choose([busy, idle_other, warm], ids, "f", 64, {}).id == "d"
    # the most idle instances wins among warm peers
    warmer = Peer("e", warm={"f": 3}, load=(7, 8))
    assert choose([warm, warmer], (*ids, "e"), "f", 64, {}).id == "e"


def test_requests_in_flight_use_up_advertised_idle_instances():
    warm = Peer("b", warm={"f": 2}, load=(0, 8))
    cold = Peer("c", load=(0, 8))
    ids = ("a", "b", "c")
    assert choose([warm, cold], ids, "f", 64, {"b": 1}).id == "b"
    # both idle instances taken by requests already sent there: the peer with most room
    assert choose([warm, cold], ids, "f", 64, {"b": 2}).id == "c"


def test_without_idle_instances_the_least_loaded_peer_with_room_runs_it():
    full = Peer("b", load=(8, 8))
    half = Peer("c", load=(4, 8))
    light = Peer("d", load=(1, 8))
    ids = ("a", "b", "c", "d")
    assert choose([full, half, light], ids, "f", 64, {}).id == "d"
    assert choose([full], ids, "f", 64, {}) is None
    assert choose([], ("a",), "f", 64, {}) is None


def test_a_peer_whose_share_of_the_limit_is_zero_is_never_chosen():
    # limit 2 over nodes a, b, c: a and b have one each, c none, even with idle instances
    b, c = Peer("b", load=(3, 8)), Peer("c", warm={"f": 4})
    assert choose([b, c], ("a", "b", "c"), "f", 2, {}).id == "b"
    assert choose([c], ("a", "b", "c"), "f", 2, {}) is None
    assert choose([c], ("a", "b"), "f", 2, {}) is None  # not (or no longer) a live node


# -- the node credential --------------------------------------------------------------------

TARGET = invoke_target("f", None)


def test_a_signed_request_verifies_once():
    key = NodeKey(KEY, "node-a")
    cred = key.sign("POST", TARGET, b"{}", "node-b").partition(" ")[2]
    other = NodeKey(KEY, "node-b")
    assert other.verify(cred, "POST", TARGET) == "node-a"
    assert other.verify(cred, "POST", TARGET) is None  # a replay within the window


@pytest.mark.parametrize("change", ["key", "method", "target", "mac", "node", "body", "ts",
                                    "missing", "receiver"])
def test_a_forged_or_altered_credential_fails(change):
    key = NodeKey(KEY, "node-a")
    cred = key.sign("POST", TARGET, b"{}", "x").partition(" ")[2]
    fields = parse(cred)
    assert fields is not None
    method, target, verifier = "POST", TARGET, NodeKey(KEY, "x")
    if change == "key":
        verifier = NodeKey(bytes(32), "x")
    elif change == "method":
        method = "PUT"
    elif change == "target":
        target = invoke_target("g", None)
    elif change in ("mac", "node", "body"):
        fields[change] = fields[change][:-1] + ("0" if fields[change][-1] != "0" else "1")
    elif change == "ts":
        fields["ts"] = str(int(fields["ts"]) + 1)
    elif change == "missing":
        del fields["nonce"]
    elif change == "receiver":  # made for node x, shown to node y: never good there
        verifier = NodeKey(KEY, "y")
    forged = ",".join(f"{k}={v}" for k, v in fields.items())
    assert verifier.verify(forged, method, target) is None


def test_a_credential_out_of_its_window_fails():
    key = NodeKey(KEY, "node-a", window_s=30)
    old = key.sign("POST", TARGET, b"{}", "node-a", now=1000.0).partition(" ")[2]
    assert key.verify(old, "POST", TARGET, now=1031.0) is None
    assert key.verify(old, "POST", TARGET, now=969.0) is None  # from the future
    assert key.verify(old, "POST", TARGET, now=1029.0) == "node-a"


def test_the_replay_memory_forgets_only_after_the_window():
    key = NodeKey(KEY, "a", window_s=30)
    creds = [key.sign("POST", TARGET, b"{}", "a", now=1000.0 + i).partition(" ")[2] for i in range(3)]
    for i, c in enumerate(creds):
        assert key.verify(c, "POST", TARGET, now=1000.0 + i) == "a"
    assert len(key._seen) == 3
    assert key.verify(creds[0], "POST", TARGET, now=1029.0) is None  # still remembered
    key.verify(key.sign("POST", TARGET, b"{}", "a", now=1070.0).partition(" ")[2], "POST", TARGET,
               now=1070.0)
    assert len(key._seen) == 1  # the old ones (out of the window anyway) are forgotten


def test_the_body_must_be_the_signed_one():
    auth = NodeKey(KEY, "a").sign("POST", TARGET, b'{"x": 1}', "b")
    assert body_matches(auth, b'{"x": 1}') and not body_matches(auth, b'{"x": 2}')
    assert inbound({"authorization": auth}, b'{"x": 1}', "RequestResponse")
    with pytest.raises(Forbidden):
        inbound({"authorization": auth}, b'{"x": 2}', "RequestResponse")
    with pytest.raises(Forbidden):  # only sync invokes are forwarded
        inbound({"authorization": auth}, b'{"x": 1}', "Event")


def test_a_forwarded_request_is_marked_and_others_are_not():
    assert inbound({FORWARDED: "a"}, b"{}", "RequestResponse")
    assert not inbound({"authorization": "Bearer t"}, b"{}", "RequestResponse")
    assert not inbound({}, b"{}", "RequestResponse")


# -- the scheduler: room and shares ---------------------------------------------------------


def spec(**kw) -> FunctionSpec:
    base = dict(name="f", version="$LATEST", revision="r1", arn="arn:f", handler="h",
                code_dir="/nonexistent", limits=Limits(timeout_s=5), isolation="stub")
    base.update(kw)
    return FunctionSpec(**base)


def req() -> InvokeRequest:
    return InvokeRequest(request_id="r", payload=b"{}", invoked_arn="arn:f")


@pytest.fixture
async def sched():
    gate = asyncio.Event()

    async def handler(event, _req):
        if event.get("block"):
            await gate.wait()
        return event

    backend = StubBackend({"h": handler})
    s = Scheduler({"stub": SafeSandbox(backend)}, max_queue=4, queue_timeout_s=5.0)
    s.gate = gate  # type: ignore[attr-defined]
    yield s
    gate.set()
    await s.close()


def blocking() -> InvokeRequest:
    return InvokeRequest(request_id="b", payload=json.dumps({"block": True}).encode(),
                         invoked_arn="arn:f")


async def test_room_is_an_idle_instance_or_room_under_the_share(sched):
    s = spec(max_instances=2)
    assert sched.has_room(s)  # no pool yet: a start would run it
    await sched.invoke(s, req())
    assert sched.has_room(s)  # an idle instance
    first = asyncio.ensure_future(sched.invoke(s, blocking()))
    second = asyncio.ensure_future(sched.invoke(s, blocking()))
    pool = sched.current[("f", "$LATEST")]
    while len(pool.busy) < 2:
        await asyncio.sleep(0.01)
    assert not sched.has_room(s)
    sched.gate.set()
    await asyncio.gather(first, second)
    assert sched.has_room(s)


async def test_a_node_runs_only_its_share_and_follows_membership(sched):
    s = spec(max_instances=3)
    sched.reshare(Share.among(["a", "b"], "b"))  # 3 over a, b: b has 1
    assert sched.share.of(3) == 1
    running = asyncio.ensure_future(sched.invoke(s, blocking()))
    pool = sched.pool(s)
    while not pool.busy:
        await asyncio.sleep(0.01)
    assert pool.max_instances == 1 and not sched.has_room(s)
    # a leaves: b has the whole limit, and room again
    sched.reshare(Share.among([], "b"))
    assert pool.max_instances == 3 and sched.has_room(s)
    sched.reshare(Share.among(["a", "b", "c", "d"], "d"))  # 3 over 4 nodes: d has none
    assert pool.max_instances == 0 and not sched.has_room(s)
    sched.gate.set()
    await running
    assert pool.size == 0  # released over the shrunk limit: stopped, not kept idle
    with pytest.raises(TooManyRequests, match="no share to this node"):
        await sched.invoke(s, req())


async def test_a_shrinking_share_stops_idle_instances_over_it(sched):
    s = spec(max_instances=4, min_warm=4)
    pool = sched.pool(s)
    await asyncio.gather(*pool.tasks)
    assert len(pool.idle) == 4
    sched.reshare(Share.among(["a"], "b"))  # 4 over a, b: b has 2
    assert len(pool.idle) == 2 and pool.max_instances == 2
    await asyncio.gather(*pool.tasks)
