"""The forwarding client (dayfly/cluster/relay.py) against a real TCP server that answers with
each framing a peer may use, closes kept-alive connections, or hangs up mid-reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from dayfly.cluster.relay import Broken, Relay, Unreachable

Answer = Callable[[bytes], bytes | None]  # request head -> raw reply (None: hang up)


async def serve(answer: Answer, close_after: bool = False) -> tuple[asyncio.Server, list[int]]:
    """A server answering each request on a connection with `answer` (and then hanging up, if
    `close_after`); counts connections."""
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                raw = answer(head + body)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, conns


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = Relay()
    yield r
    await r.close()


def url(server: asyncio.Server) -> str:
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_replies_of_every_framing_and_kept_alive(relay):
    replies = iter([
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nX-Amz-Function-Error: Unhandled\r\n\r\nhello",
        b"HTTP/1.1 429 Too Many\r\ntransfer-encoding: chunked\r\nretry-after: 3\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    ])
    seen: list[bytes] = []

    def answer(request: bytes) -> bytes | None:
        seen.append(request)
        return next(replies)

    server, conns = await serve(answer)
    async with server:
        r1 = await relay.request(url(server), "POST", "/a?Q=1", [("x-one", "1")], b'{"a": 1}', 5)
        assert (r1.status, r1.body, r1.header("x-amz-function-error")) == (200, b"hello",
                                                                           "Unhandled")
        r2 = await relay.request(url(server), "POST", "/b", [], b"{}", 5)
        assert (r2.status, r2.body, r2.header("retry-after")) == (429, b"abcde", "3")
        r3 = await relay.request(url(server), "POST", "/c", [], b"", 5)
        assert (r3.status, r3.body) == (200, b"")
        assert len(conns) == 1  # one kept-alive connection for all three
    assert seen[0].startswith(b"POST /a?Q=1 HTTP/1.1\r\n")
    assert b"\r\nx-one: 1\r\n" in seen[0] and seen[0].endswith(b'\r\n\r\n{"a": 1}')


async def test_a_reply_delimited_by_the_end_of_the_connection(relay):
    server, conns = await serve(lambda _: b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
                                close_after=True)
    async with server:
        for _ in range(2):
            reply = await relay.request(url(server), "POST", "/", [], b"{}", 5)
            assert (reply.status, reply.body) == (200, b"until the end")
        assert len(conns) == 2  # such a connection is never reused


async def test_a_stale_kept_alive_connection_is_retried_once(relay):
    count = [0]

    def answer(_: bytes) -> bytes | None:
        count[0] += 1
        if count[0] == 2:
            return None  # the server hangs up on the reused connection without answering
        return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    server, conns = await serve(answer)
    async with server:
        assert (await relay.request(url(server), "POST", "/", [], b"{}", 5)).body == b"ok"
        assert (await relay.request(url(server), "POST", "/", [], b"{}", 5)).body == b"ok"
        assert len(conns) == 2 and count[0] == 3


async def test_a_fresh_connection_closed_without_a_reply_is_broken(relay):
    server, _ = await serve(lambda _: None)
    async with server:
        with pytest.raises(Broken):
            await relay.request(url(server), "POST", "/", [], b"{}", 5)


async def test_a_reply_cut_off_in_its_body_is_broken(relay):
    cut, _ = await serve(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
                         close_after=True)
    async with cut:
        with pytest.raises(Broken):
            await relay.request(url(cut), "POST", "/", [], b"{}", 5)
        assert not relay.idle.get(url(cut))


async def test_no_listener_is_unreachable(relay):
    server, _ = await serve(lambda _: None)
    address = url(server)
    server.close()
    await server.wait_closed()
    with pytest.raises(Unreachable):
        await relay.request(address, "POST", "/", [], b"{}", 5)


# -- the Forwarder over the relay -----------------------------------------------------------


class Counts:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def forwarded(self, peer: str, outcome: str) -> None:
        self.seen.append((peer, outcome))


class Sched:
    def reshare(self, share) -> None:
        self.share = share


class Members:
    def __init__(self, peers) -> None:
        self.list = peers

    def peers(self):
        return self.list


def forwarder(address: str, counts: Counts):
    from dataclasses import dataclass, field

    from dayfly.cluster.forward import Forwarder

    @dataclass
    class Peer:
        id: str
        address: str
        warm: dict = field(default_factory=dict)
        load: tuple = (0, 8)

    fwd = Forwarder(Members([Peer("me", "http://x"), Peer("p", address)]), "me", b"k" * 32,
                    Sched(), counts, queue_timeout_s=1.0)
    fwd.refresh()
    return fwd


def a_spec():
    from dayfly.types import FunctionSpec

    return FunctionSpec(name="f", version="$LATEST", revision="r", arn="arn:f", handler="h",
                        code_dir="/nonexistent", max_instances=4)


async def test_the_forwarder_relays_and_counts_outcomes():
    replies = iter([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-amz-function-error: Unhandled"
                    b"\r\nx-amzn-requestid: r1\r\n\r\n{}",
                    b"HTTP/1.1 429 Too Many\r\ncontent-length: 2\r\nretry-after: 7\r\n\r\n{}"])
    seen: list[bytes] = []

    def answer(request: bytes) -> bytes | None:
        seen.append(request)
        return next(replies)

    server, _ = await serve(answer)
    counts = Counts()
    fwd = forwarder(url(server), counts)
    async with server:
        assert fwd.scheduler.share == (0, 2)  # "me" sorts before "p"
        spec = a_spec()
        peer = fwd.choose(spec)
        assert peer is not None and peer.id == "p"
        r = await fwd.forward(peer, "f", "live", {"x-amz-log-type": "Tail"}, b'{"a": 1}', spec)
        assert r.status_code == 200 and r.body == b"{}"
        assert r.headers["x-amz-function-error"] == "Unhandled"
        assert r.headers["x-amzn-requestid"] == "r1"
        r = await fwd.forward(peer, "f", None, {}, b"{}", spec)
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
    await fwd.close()
    assert counts.seen == [("p", "function_error"), ("p", "throttled")]
    first = seen[0].decode()
    assert first.startswith("POST /2015-03-31/functions/f/invocations?Qualifier=live HTTP/1.1")
    assert "\r\nx-amz-log-type: Tail\r\n" in first and "\r\nx-dayfly-forwarded-from: me\r\n" in first
    assert "\r\nauthorization: DAYFLY-NODE node=me," in first
    assert fwd.sending == {"p": 0}


async def test_an_unreachable_peer_leaves_the_invoke_here():
    server, _ = await serve(lambda _: None)
    address = url(server)
    server.close()
    await server.wait_closed()
    counts = Counts()
    fwd = forwarder(address, counts)
    spec = a_spec()
    assert await fwd.forward(fwd.choose(spec), "f", None, {}, b"{}", spec) is None
    assert counts.seen == [("p", "unreachable")]
    # not chosen again for a while (a dead host's connect would time out each time), even
    # though membership still lists it
    assert fwd.choose(spec) is None
    fwd.refresh()
    assert fwd.choose(spec) is None and fwd.scheduler.share == (0, 2)
    fwd.avoid["p"] = 0.0
    fwd.refresh()
    assert fwd.choose(spec) is not None
    await fwd.close()


async def test_a_peer_that_does_not_know_the_function_yet_leaves_the_invoke_here():
    server, _ = await serve(lambda _: b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}")
    counts = Counts()
    fwd = forwarder(url(server), counts)
    spec = a_spec()
    async with server:
        assert await fwd.forward(fwd.choose(spec), "f", None, {}, b"{}", spec) is None
    assert counts.seen == [("p", "not_found")]
    await fwd.close()


async def test_a_peer_that_fails_mid_reply_is_a_service_error():
    from dayfly.errors import ServiceError

    server, _ = await serve(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{", True)
    counts = Counts()
    fwd = forwarder(url(server), counts)
    spec = a_spec()
    async with server:
        with pytest.raises(ServiceError, match="did not answer"):
            await fwd.forward(fwd.choose(spec), "f", None, {}, b"{}", spec)
    assert counts.seen == [("p", "failed")]
    await fwd.close()


async def test_a_caller_that_hangs_up_cancels_the_relay():
    from dayfly.errors import ClientGone

    got_request = asyncio.Event()
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        got_request.set()
        await reader.read()  # never answers; returns when the forwarder closes the connection
        closed.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    address = url(server)
    counts = Counts()
    fwd = forwarder(address, counts)
    spec = a_spec()
    hang_up = asyncio.Event()

    async def gone() -> None:
        await hang_up.wait()

    async with server:
        task = asyncio.ensure_future(fwd.forward(fwd.choose(spec), "f", None, {}, b"{}", spec,
                                                 gone))
        await got_request.wait()
        hang_up.set()
        with pytest.raises(ClientGone):
            await task
        await asyncio.wait_for(closed.wait(), 5)  # the peer sees the relay's connection go
    assert fwd.sending == {"p": 0} and not fwd.relay.idle.get(address)
    await fwd.close()
