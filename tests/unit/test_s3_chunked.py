"""The aws-chunked decoder (gateway/s3/chunked.py): the same bytes, trailers and signature checks
whatever the receives look like (a chunk header, a CRLF or a trailer split between two
receives, one byte at a time), and IncompleteBody for bodies that are not well-formed."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from dayfly.gateway.s3.chunked import ChunkedBody
from dayfly.gateway.s3.sigv4 import EMPTY_SHA256, Auth, sign, signing_key
from dayfly.stores.s3errors import S3Error

STAMP, SCOPE = "20260101T000000Z", "20260101/us-east-1/s3/aws4_request"
AUTH = Auth("AKID", signing_key("secret", "20260101", "us-east-1"), SCOPE, STAMP, "0" * 64,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", False)
DATA = os.urandom(200_000)


def signed_body(data: bytes, size: int, trailer: dict[str, str]) -> bytes:
    out, prev = [], AUTH.signature
    for piece in [data[i:i + size] for i in range(0, len(data), size)] + [b""]:
        prev = sign(AUTH.signing_key, "\n".join([
            "AWS4-HMAC-SHA256-PAYLOAD", STAMP, SCOPE, prev, EMPTY_SHA256,
            hashlib.sha256(piece).hexdigest()]))
        out.append(b"%x;chunk-signature=%s\r\n%s%s" % (len(piece), prev.encode(), piece,
                                                     b"\r\n" if piece else b""))
    lines = "".join(f"{k}:{v}\n" for k, v in trailer.items())
    sig = sign(AUTH.signing_key, "\n".join(["AWS4-HMAC-SHA256-TRAILER", STAMP, SCOPE, prev,
                                            hashlib.sha256(lines.encode()).hexdigest()]))
    tail = "".join(f"{k}:{v}\r\n" for k, v in trailer.items())
    return b"".join(out) + f"{tail}x-amz-trailer-signature:{sig}\r\n\r\n".encode()


def unsigned_body(data: bytes, size: int) -> bytes:
    out = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
           for i in range(0, len(data), size)]
    return b"".join(out) + b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"


async def decode(raw: bytes, step: int | list[int], auth: Auth | None = AUTH
                 ) -> tuple[bytes, dict[str, str]]:
    cuts = step if isinstance(step, list) else list(range(step, len(raw), step))

    async def stream():
        last = 0
        for cut in [*cuts, len(raw)]:
            yield raw[last:cut]
            last = cut

    body = ChunkedBody(stream(), auth, trailer=True)
    out = bytearray()
    async for piece in body:
        out += piece
    return bytes(out), body.trailers


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 4096, 65_536, 1 << 20])
async def test_signed_any_receive_size(step):
    raw = signed_body(DATA, 65_536, {"x-amz-checksum-crc32": "AAAAAA=="})
    data, trailers = await decode(raw, step if step > 3 else step * 997)
    assert data == DATA and trailers == {"x-amz-checksum-crc32": "AAAAAA=="}


async def test_every_cut_of_a_small_body():
    """Two receives, cut at every byte: CRLFs, headers and the trailer split every way."""
    small = b"hello, chunked world"
    raw = signed_body(small, 7, {"x-amz-checksum-sha256": "abc="})
    for cut in range(1, len(raw)):
        assert await decode(raw, [cut]) == (small, {"x-amz-checksum-sha256": "abc="}), cut
    raw = unsigned_body(small, 5)
    for cut in range(1, len(raw)):
        assert (await decode(raw, [cut], None))[0] == small, cut


async def test_tampered_chunk_refused_at_any_cut():
    raw = bytearray(signed_body(DATA, 65_536, {"x-amz-checksum-crc32": "AAAAAA=="}))
    raw[70_000] ^= 1
    for step in (1000, 65_536):
        with pytest.raises(S3Error) as exc:
            await decode(bytes(raw), step)
        assert exc.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("raw, why", [
    (b"zz\r\nab\r\n0\r\n\r\n", "not hexadecimal"),
    (b"5\r\nab", "body ended in the middle of a chunk"),
    (b"2\r\nab\r\n0\r\nx-amz-checksum-crc32:AA", "body ended in the middle of a line"),
    (b"2\r\nabc\r\n0\r\n\r\n", "longer than its declared size"),
    (b"2\r\nab\r\n0\r\nno-colon\r\n\r\n", "no ':'"),
    (b"1" * 5000, "too long"),
    (b"2\r\nab\r\n0\r\n\r\nextra", "after the end"),
])
async def test_malformed_bodies(raw, why):
    for step in (1, 3, len(raw)):
        with pytest.raises(S3Error) as exc:
            await decode(raw, step, None)
        assert exc.value.code == "IncompleteBody" and why in exc.value.message


BIG = os.urandom(5 * 1024 * 1024 + 7)  # past INLINE: chunks are checked in a thread


def _checkers() -> list[str]:
    """The checking threads still alive once they had 10 s to see that the body ended."""
    left = [t for t in threading.enumerate() if t.name == "dayfly-s3-chunks"]
    for t in left:
        t.join(10)
    return [t.name for t in left if t.is_alive()]


@pytest.mark.parametrize("size", [1000, 8192, 65_536, 1 << 20])
async def test_a_large_signed_body_is_checked_in_a_thread(size):
    raw = signed_body(BIG, size, {"x-amz-checksum-crc32": "AAAAAA=="})
    assert await decode(raw, 100_000) == (BIG, {"x-amz-checksum-crc32": "AAAAAA=="})
    assert not _checkers()


@pytest.mark.parametrize("at", [100_000, 3 * 1024 * 1024, len(BIG) - 10])
async def test_a_tampered_chunk_of_a_large_body_fails_it_before_its_end(at):
    """Wherever the bad chunk is (checked on the loop, or in the thread), the body's iteration
    raises: the blob being written is discarded, never committed."""
    raw = bytearray(signed_body(BIG, 65_536, {"x-amz-checksum-crc32": "AAAAAA=="}))
    raw[at + 100] ^= 1  # (data: the chunk headers are short)
    with pytest.raises(S3Error) as exc:
        await decode(bytes(raw), 100_000)
    assert exc.value.code == "SignatureDoesNotMatch"
    assert not _checkers()
