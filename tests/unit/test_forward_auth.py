"""The node credential at the front door (gateway/auth.py with gateway/classify.py): another node's
signed invoke passes, with or without a token policy; a missing, forged, expired, replayed or
misplaced one (deploy, S3, any other route) is refused with 403, through a real HTTP client
against the real Auth middleware."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import pytest

from dayfly.cluster.credential import FORWARDED, NodeKey
from dayfly.cluster.forward import LOCAL_ONLY, invoke_target

KEY = bytes(range(32))
INVOKE = invoke_target("f", None)


async def downstream(scope, receive, send):
    """What lies behind auth: answers 200 with the path it was reached at."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def platform(tokens_required: bool, forwarder=None) -> SimpleNamespace:
    tokens = SimpleNamespace(ids={"t1"} if tokens_required else set(), changed=0,
                             check=lambda token: None)
    return SimpleNamespace(
        tokens=tokens, settings=SimpleNamespace(host="127.0.0.1", function_s3=None),
        registry=SimpleNamespace(config=lambda name, qualifier: SimpleNamespace(public=False)),
        forwarder=forwarder if forwarder is not None else NodeKey(KEY, "receiver"))


def client(p: SimpleNamespace) -> httpx.AsyncClient:
    from dayfly.gateway.auth import Auth

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=Auth(downstream, p)),
                             base_url="http://127.0.0.1")


def signed(target: str = INVOKE, body: bytes = b"{}", method: str = "POST",
           now: float | None = None, key: bytes = KEY, to: str = "receiver") -> dict[str, str]:
    return {"authorization": NodeKey(key, "sender").sign(method, target, body, to, now=now),
            FORWARDED: "sender"}


@pytest.mark.parametrize("tokens_required", [False, True])
async def test_a_signed_invoke_passes_once(tokens_required):
    async with client(platform(tokens_required)) as c:
        h = signed()
        assert (await c.post(INVOKE, content=b"{}", headers=h)).status_code == 200
        replay = await c.post(INVOKE, content=b"{}", headers=h)
        assert replay.status_code == 403 and replay.json()["__type"] == "AccessDeniedException"
        q = invoke_target("f", "live")
        assert (await c.post(q, content=b"{}", headers=signed(q))).status_code == 200


@pytest.mark.parametrize("tokens_required", [False, True])
@pytest.mark.parametrize("case", ["empty", "forged", "other_key", "expired", "future",
                                  "other_function", "other_qualifier"])
async def test_a_bad_node_credential_on_invoke_is_403(tokens_required, case):
    h = {"empty": lambda: {"authorization": "DAYFLY-NODE"},
         "forged": lambda: {"authorization": signed()["authorization"][:-4] + "abcd"},
         "other_key": lambda: signed(key=bytes(32)),
         "expired": lambda: signed(now=time.time() - 31),
         "future": lambda: signed(now=time.time() + 31),
         "other_function": lambda: signed(invoke_target("g", None)),
         "other_qualifier": lambda: signed(invoke_target("f", "1"))}[case]()
    async with client(platform(tokens_required)) as c:
        r = await c.post(invoke_target("f", "live") if case == "other_qualifier" else INVOKE,
                         content=b"{}", headers=h)
    assert r.status_code == 403, r.text
    assert r.json()["__type"] == "AccessDeniedException"


@pytest.mark.parametrize("tokens_required", [False, True])
@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/2015-03-31/functions"),  # deploy (CreateFunction)
    ("PUT", "/2015-03-31/functions/f/code"),  # UpdateFunctionCode
    ("GET", "/2015-03-31/functions"),
    ("PUT", "/bucket/key"),  # S3, path style
    ("GET", "/bucket"),
    ("POST", "/dayfly/v1/tokens"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),  # even where no credential is needed at all
    ("POST", "/dayfly/v1/ingest/s3/src"),
])
async def test_the_node_credential_is_refused_off_the_invoke_route(tokens_required, method, path):
    """Valid MACs made for exactly these requests: the credential itself is for invokes only."""
    async with client(platform(tokens_required)) as c:
        r = await c.request(method, path, content=b"{}", headers=signed(path, method=method))
    assert r.status_code == 403, r.text


async def test_a_forwarded_mark_without_a_credential_grants_nothing():
    async with client(platform(tokens_required=True)) as c:
        r = await c.post(INVOKE, content=b"{}", headers={FORWARDED: "sender"})
    assert r.status_code == 401


async def test_a_single_node_accepts_no_node_credential():
    async with client(platform(tokens_required=False, forwarder=LOCAL_ONLY)) as c:
        r = await c.post(INVOKE, content=b"{}", headers=signed())
    assert r.status_code == 403


def test_the_front_door_lets_a_node_credential_reach_auth_under_any_host_name():
    """Another node reaches this one at its advertise URL, whose name need not be one the
    origin guard knows; a forged credential under that name is then auth's 403."""
    from dayfly.gateway.classify import Family, Form, Route
    from dayfly.gateway.origin import Policy, refusal

    policy = Policy.of("0.0.0.0")
    foreign = [(b"host", b"node2.cluster.internal:8080")]
    assert refusal(policy, Route(Family.INVOKE, Form.NODE), "POST", foreign) is None
    assert refusal(policy, Route(Family.INVOKE, Form.BEARER), "POST", foreign) is not None
    assert refusal(policy, Route(Family.INVOKE, Form.NONE), "POST", foreign) is not None
