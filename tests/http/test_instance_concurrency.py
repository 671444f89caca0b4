"""Per-instance concurrency (`concurrency = N` in dayfly.toml): one instance of an ASGI app or
an `async def` handler serves up to N invocations at once on its event loop; the N+1th starts
a second instance; a timeout or an exception in one leaves the others running on it, each
with its own result and logs; concurrency 1 (the default) keeps one invocation per instance.
Real FastAPI (vendored), real server, requests held on files the test creates."""

from __future__ import annotations

import base64
import concurrent.futures
import time

import httpx
import orjson
import pytest
from conftest import ALLOW_WEAK, make_zip
from webapp_helpers import FASTAPI, deploy, event, gate_dir, vendored

SERVER_ARGS = ALLOW_WEAK
TIERS = ("process", "linux", "gvisor")

APP = '''
import asyncio, os, time
from fastapi import FastAPI

app = FastAPI()
GATE = os.environ["GATE"]
INSTANCE = os.urandom(8).hex()  # imported once per instance (pids repeat in the linux tier)

@app.get("/wait/{name}")
async def wait(name: str):
    print(f"waiting for {name}")
    while not os.path.exists(os.path.join(GATE, name)):
        await asyncio.sleep(0.005)
    print(f"{name} is there")
    return {"pid": INSTANCE, "name": name}

@app.get("/hang")
async def hang():
    print("hanging")
    await asyncio.sleep(3600)

@app.get("/block")
async def block():
    time.sleep(3600)  # holds the event loop: nothing else on this instance can run

@app.get("/boom")
async def boom():
    raise RuntimeError("this request failed")
'''

ASYNC_HANDLER = '''
import asyncio, os

INSTANCE = os.urandom(8).hex()

async def handler(event, context):
    while not os.path.exists(os.path.join(os.environ["GATE"], event["gate"])):
        await asyncio.sleep(0.005)
    return {"pid": INSTANCE}
'''


# the timed-out function's timeout: a request sent 1-1.5 s after another must still find it
# running, on a busy machine too (at 2 s the margin was half a second, and runs on a loaded machine failed)
TIMEOUT_S = 4


def _toml(tier: str, gate, concurrency: int | None, timeout: int = 30,
          handler: str = "app:app", kind: str | None = "asgi") -> str:
    return (f'handler = "{handler}"\n' + (f'kind = "{kind}"\n' if kind else "")
            + f'isolation = "{tier}"\ntimeout = {timeout}\nfiles = ["{gate}"]\n'
            + (f"concurrency = {concurrency}\n" if concurrency is not None else "")
            + f'[env]\nGATE = "{gate}"\n')


@pytest.fixture(scope="module", params=TIERS)
def fns(request, server):
    """(tier, gate dir, {role: function name}) for one tier's functions."""
    tier = request.param
    libs = vendored(*FASTAPI)
    with gate_dir() as gate:
        names = {"shared": f"shared-{tier}", "timeout": f"shared-t-{tier}",
                 "single": f"single-{tier}", "async": f"async-{tier}"}
        deploy(server, names["shared"], {"app.py": APP, **libs,
                                         "dayfly.toml": _toml(tier, gate, 4)})
        deploy(server, names["timeout"], {"app.py": APP, **libs,
                                          "dayfly.toml": _toml(tier, gate, 8, timeout=TIMEOUT_S)})
        deploy(server, names["single"], {"app.py": APP, **libs,
                                         "dayfly.toml": _toml(tier, gate, None)})
        deploy(server, names["async"], {"fn.py": ASYNC_HANDLER, "dayfly.toml": _toml(
            tier, gate, 3, handler="fn.handler", kind=None)})
        yield tier, gate, names


def _invoke(server, name: str, ev: dict) -> tuple[dict, str]:
    """The answer (or {"error": ...}) and the invocation's own log tail."""
    r = httpx.post(f"{server.url}/2015-03-31/functions/{name}/invocations", json=ev,
                   headers={"X-Amz-Log-Type": "Tail"}, timeout=60)
    assert r.status_code == 200, r.text
    logs = base64.b64decode(r.headers.get("x-amz-log-result", "")).decode()
    out = orjson.loads(r.content)
    return ({"error": out} if "x-amz-function-error" in r.headers else out), logs


def _instances(server, name: str) -> list[dict]:
    r = httpx.get(f"{server.url}/dayfly/v1/functions/{name}/instances", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["instances"]


def _until(what, check, limit: float = 30.0):
    """Poll the server until `check()` is truthy (the requests the test sent have arrived)."""
    deadline = time.monotonic() + limit
    while not (got := check()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)
    return got


def _running(server, name: str) -> list[int]:
    return [i.get("running", 0) for i in _instances(server, name) if i["id"]]


def _send(pool, server, name: str, path: str):
    return pool.submit(_invoke, server, name, event("GET", path))


def test_n_requests_share_one_instance_and_the_next_starts_another(server, fns):
    _, gate, names = fns
    name = names["shared"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        first = [_send(pool, server, name, f"/wait/a{i}") for i in range(4)]
        _until("4 running on one instance", lambda: _running(server, name) == [4])
        fifth = _send(pool, server, name, "/wait/a4")
        _until("a second instance for the fifth",
               lambda: sorted(_running(server, name)) == [1, 4])
        for i in range(5):
            (gate / f"a{i}").touch()
        got = [f.result() for f in first]
        out5, _ = fifth.result()
    pids = {orjson.loads(out["body"])["pid"] for out, _ in got}
    assert len(pids) == 1 and all(out["statusCode"] == 200 for out, _ in got)
    assert out5["statusCode"] == 200 and orjson.loads(out5["body"])["pid"] not in pids
    for i, (_, logs) in enumerate(got):  # each record has its own request's output only
        assert f"waiting for a{i}\n" in logs and f"a{i} is there" in logs, logs
        assert all(f"for a{j}\n" not in logs for j in range(5) if j != i), logs
    assert len(_instances(server, name)) == 2


def test_an_exception_in_one_request_leaves_the_others_fine(server, fns):
    _, gate, names = fns
    name = names["shared"]
    httpx.delete(f"{server.url}/dayfly/v1/functions/{name}/instances", timeout=30)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        waiting = [_send(pool, server, name, f"/wait/b{i}") for i in range(2)]
        _until("2 running", lambda: _running(server, name) == [2])
        boom, logs = _invoke(server, name, event("GET", "/boom"))
        assert boom["statusCode"] == 500  # the app's own 500 (Starlette), then it raised
        assert "this request failed" in logs and "waiting for" not in logs
        assert _running(server, name) == [2]
        for i in range(2):
            (gate / f"b{i}").touch()
        got = [f.result() for f in waiting]
    assert [out.get("statusCode") for out, _ in got] == [200, 200], got
    assert len({orjson.loads(out["body"])["pid"] for out, _ in got}) == 1
    assert all("this request failed" not in logs for _, logs in got)


def _after(started: float, s: float) -> bool:
    """Whether `s` seconds have passed since `started`: every request of a function has its
    timeout (TIMEOUT_S here), so the ones beside a timed-out one are sent that much later than it
    (timed from when the server showed it running: its deadline started before that)."""
    return time.monotonic() - started >= s


def test_a_timeout_in_one_request_leaves_the_others_running(server, fns):
    _, gate, names = fns
    name = names["timeout"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        hanging = _send(pool, server, name, "/hang")
        _until("the hanging one running", lambda: _running(server, name) == [1])
        seen = time.monotonic()  # its deadline runs from before this (a cold start is not in it)
        _until("a second since", lambda: _after(seen, 1.0))
        before = _instances(server, name)[0]["id"]
        waiting = [_send(pool, server, name, f"/wait/c{i}") for i in range(3)]
        _until("4 running", lambda: _running(server, name) == [4])
        hung, logs = hanging.result()
        assert hung["error"]["errorType"] == "Sandbox.Timedout", hung
        assert f"Task timed out after {TIMEOUT_S}.00 seconds" in logs and "hanging" in logs
        assert "waiting for" not in logs
        # cancelled in the instance: it stays, and so do the others
        assert [(i["id"], i["running"]) for i in _instances(server, name)] == [(before, 3)]
        for i in range(3):
            (gate / f"c{i}").touch()
        got = [f.result() for f in waiting]
    assert [out["statusCode"] for out, _ in got] == [200, 200, 200]
    assert [i["id"] for i in _instances(server, name)] == [before]


def test_a_request_that_blocks_the_loop_retires_the_instance(server, fns):
    _, gate, names = fns
    name = names["timeout"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        blocking = _send(pool, server, name, "/block")
        _until("the blocking one running", lambda: _running(server, name) == [1])
        seen = time.monotonic()
        _until("1.5 s since", lambda: _after(seen, 1.5))
        before = {i["id"] for i in _instances(server, name)}
        waiting = _send(pool, server, name, "/wait/never")
        _until("2 running", lambda: _running(server, name) == [2])
        blocked, _ = blocking.result()
        assert blocked["error"]["errorType"] == "Sandbox.Timedout", blocked
        other, _ = waiting.result()
    # its event loop never ran again: killed after the grace, and the request beside it
    # failed (before its own deadline), saying why
    assert other["error"]["errorType"] == "Runtime.ExitError", other
    assert "did not stop within 1 s" in other["error"]["errorMessage"], other
    _until("the instance gone", lambda: not before & {i["id"] for i in _instances(server, name)})
    (gate / "after").touch()
    ok, _ = _invoke(server, name, event("GET", "/wait/after"))
    assert ok["statusCode"] == 200


def test_an_async_def_handler_shares_its_instance(server, fns):
    _, gate, names = fns
    name = names["async"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(_invoke, server, name, {"gate": "d"}) for _ in range(3)]
        _until("3 running on one instance", lambda: _running(server, name) == [3])
        (gate / "d").touch()
        got = [f.result()[0] for f in calls]
    assert len({out["pid"] for out in got}) == 1


def test_concurrency_1_keeps_one_request_per_instance(server, fns):
    _, gate, names = fns
    name = names["single"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        calls = [_send(pool, server, name, f"/wait/e{i}") for i in range(2)]
        _until("2 instances, 1 each", lambda: _running(server, name) == [1, 1])
        for i in range(2):
            (gate / f"e{i}").touch()
        got = [f.result()[0] for f in calls]
    assert len({orjson.loads(out["body"])["pid"] for out in got}) == 2


def _deploy_status(server, name: str, files: dict) -> tuple[int, str]:
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=make_zip(files), headers={"content-type": "application/zip"},
                      timeout=120) as r:
        r.read()
    return r.status_code, r.text


@pytest.mark.parametrize(("toml", "code", "says"), [
    ('handler = "app:app"\nkind = "wsgi"\nconcurrency = 2\n', "app = None\n", "async def"),
    ('handler = "app:app"\nkind = "asgi"\nconcurrency = 0\n', "app = None\n", "concurrency"),
    ('handler = "app:app"\nkind = "asgi"\nconcurrency = 1001\n', "app = None\n", "concurrency"),
    ('handler = "app:app"\nkind = "asgi"\nconcurrency = "8"\n', "app = None\n", "concurrency"),
    ('handler = "fn.h"\nconcurrency = 2\n', "def h(event, context):\n    return 1\n",
     "async def"),
    ('handler = "app:app"\nkind = "asgi"\nconcurrency = 2\nbuckets = ["b:read"]\n',
     "app = None\n", "buckets"),
])
def test_concurrency_is_refused_where_it_cannot_work(server, toml, code, says):
    status, text = _deploy_status(server, "refused", {"dayfly.toml": toml, "fn.py": code,
                                                      "app.py": code})
    assert status == 400 or '"error"' in text, (status, text)
    assert says in text, text


def test_a_shared_channel_routes_answers_by_request_id_and_drops_the_unnamed():
    """The host end over a socket pair: answers out of order, each to its invocation, with its
    logs; frames that name no invocation (or name it wrongly) reach nobody and are not kept."""
    import asyncio
    import socket

    from dayfly.runtime import protocol as p
    from dayfly.sandbox.channel import SharedChannel

    def raw(kind: int, meta: bytes, payload: bytes = b"") -> bytes:
        return p.PREFIX.pack(kind, len(meta), len(payload)) + meta + payload

    async def main() -> None:
        ours, theirs = socket.socketpair()
        chan = SharedChannel(ours)
        calls = {q: chan.loop.create_future() for q in ("r1", "r2")}
        for q, fut in calls.items():
            chan.calls[q], chan.call_logs[q] = fut, []
        done = {"ns": 1, "rss": 1}
        theirs.sendall(b"".join([
            p.encode(p.LOG, {"q": "r2"}, b"two\n"),
            p.encode(p.RESULT, {**done, "q": "r2"}, b"2"),
            p.encode(p.RESULT, done, b"nobody's"), raw(p.ERROR, b"[1]", b"x"),
            raw(p.RESULT, b'{"q": ["r1"]}', b"x"), raw(p.LOG, b"{bad", b"x"),
            p.encode(p.LOG, None, b"outside\n"), p.encode(p.LOG, {"q": "r1"}, b"one\n"),
            p.encode(p.ERROR, {**done, "q": "r1"}, b"1")]))
        second = await calls["r2"]
        first = await calls["r1"]
        assert (second[0], second[2]) == (p.RESULT, b"2")
        assert (first[0], first[2]) == (p.ERROR, b"1")
        assert chan.call_logs == {"r1": ["one\n"], "r2": ["two\n"]}
        assert chan.logs == ["x", "outside\n"] and not chan.early
        chan.calls["r3"] = chan.loop.create_future()
        theirs.close()  # the instance is gone: what is waiting hears it
        try:
            await chan.calls["r3"]
        except EOFError:
            pass
        else:
            raise AssertionError("no EOFError")
        chan.close()

    asyncio.run(main())
