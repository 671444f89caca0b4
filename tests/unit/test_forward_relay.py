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
