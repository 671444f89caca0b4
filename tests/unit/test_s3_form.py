"""The POST Object form parser (gateway/s3/form.py): the same fields and file whatever the
chunking (a delimiter split across chunks, one byte at a time), and MalformedPOSTRequest for
bodies that are not well-formed multipart/form-data."""

from __future__ import annotations

import asyncio

import pytest

from dayfly.gateway.s3.form import Form, boundary_of
from dayfly.stores.s3errors import S3Error

BOUNDARY = "----dayflyBoundary7MA4YWxk"


def body(fields: dict[str, str], file: bytes, after: str = "") -> bytes:
    out = b""
    for name, value in fields.items():
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a b.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    out += file + b"\r\n"
    out += after.encode() + f"--{BOUNDARY}--\r\n".encode()
    return out


async def parse(raw: bytes, size: int) -> tuple[dict[str, str], str | None, bytes]:
    async def stream():
        for i in range(0, len(raw), size):
            yield raw[i:i + size]
    form = Form(stream(), BOUNDARY.encode())
    fields = await form.fields()
    data = b"".join([c async for c in form.file()]) if form.filename is not None else b""
    return fields, form.filename, data


# a file that holds almost-delimiters: CRLF, dashes, the boundary without its CRLF
TRICKY = b"\r\n--" + BOUNDARY.encode()[:-1] + b"x\r\n\r\n--\r" + bytes(range(256)) * 40


@pytest.mark.parametrize("size", [1, 2, 7, 64, 4096, 1 << 20])
def test_same_result_whatever_the_chunking(size):
    fields = {"key": "uploads/${filename}", "Content-Type": "image/jpeg", "x-amz-meta-é": "ü"}
    raw = body(fields, TRICKY, after=f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
                                     "name=\"ignored\"\r\n\r\nlater\r\n")
    got, filename, data = asyncio.run(parse(raw, size))
    assert got == {"key": "uploads/${filename}", "content-type": "image/jpeg",
                   "x-amz-meta-é": "ü"}
    assert filename == "a b.jpg"
    assert data == TRICKY


def test_an_empty_file_and_no_file():
    assert asyncio.run(parse(body({"key": "k"}, b""), 3))[2] == b""
    raw = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n" \
          f"--{BOUNDARY}--\r\n".encode()
    fields, filename, _ = asyncio.run(parse(raw, 5))
    assert fields == {"key": "k"} and filename is None


@pytest.mark.parametrize("raw", [
    b"",
    b"no boundary at all",
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nunterminated".encode(),
    f"--{BOUNDARY}\r\nX-Header-Without-Colon\r\n\r\nv\r\n--{BOUNDARY}--".encode(),
    f"--{BOUNDARY}\r\nContent-Disposition: attachment; name=\"k\"\r\n\r\nv\r\n".encode(),
    f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nv\r\n--{BOUNDARY}--".encode(),
    body({"key": "k"}, b"data")[:-len(f"--{BOUNDARY}--\r\n") - 3],  # cut inside the file
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n".encode()
    + b"x" * 70_000,  # fields over 64 KiB
], ids=["empty", "junk", "unterminated", "bad-header", "not-form-data", "no-name", "cut",
        "too-long"])
def test_malformed_bodies_are_refused(raw):
    with pytest.raises(S3Error) as exc:
        asyncio.run(parse(raw, 1024))
    assert exc.value.code in ("MalformedPOSTRequest", "InvalidArgument")


@pytest.mark.parametrize("value", ["text/plain", "multipart/form-data",
                                   "multipart/form-data; boundary=", "multipart/mixed; boundary=x",
                                   "multipart/form-data; boundary=" + "x" * 71])
def test_content_types_without_a_usable_boundary(value):
    with pytest.raises(S3Error) as exc:
        boundary_of(value)
    assert exc.value.code == "MalformedPOSTRequest"


def test_quoted_boundary():
    assert boundary_of('multipart/form-data; charset=utf-8; boundary="a b"') == b"a b"
