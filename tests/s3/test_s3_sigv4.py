"""SigV4 at the edges: aws-chunked bodies (signed chunks, unsigned and signed trailers), payload
hashes, clock skew, and the default key's credentials file."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import stat
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import botocore.httpchecksum
import httpx
import pytest
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from s3_helpers import (
    EMPTY_SHA256,
    credentials,
    new_bucket,
    s3_client,
    sign,
    signed_chunks,
    xml_error,
)

from dayfly.gateway.classify import Family, classify


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture(scope="module")
def bucket(s3):
    return new_bucket(s3, "sig")


@pytest.fixture(scope="module")
def creds(server):
    return credentials(server.data_dir)


def b64crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def put_chunked(server, creds, bucket, key, body: bytes, mode: str, decoded: int,
                extra: dict[str, str] | None = None, tamper=None) -> httpx.Response:
    url = f"{server.url}/{bucket}/{key}"
    headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded),
               **(extra or {})}
    signed = sign("PUT", url, *creds, mode, headers)
    if callable(body):
        body = body(signed)
    if tamper is not None:
        body = tamper(body)
    return httpx.put(url, content=body, headers=signed.headers)


def test_streaming_signed_chunks(server, s3, creds, bucket):
    data = os.urandom(200 * 1024)
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    r = put_chunked(server, creds, bucket, "chunked", lambda s: signed_chunks(s, data, 65536),
                    mode, len(data))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == data


def test_tampered_chunk_is_refused_and_nothing_stored(server, s3, creds, bucket):
    data = b"a" * 100_000
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

    def flip(body: bytes) -> bytes:  # one byte of the second chunk
        i = body.index(b"a" * 10, body.index(b"chunk-signature", 200)) + 5
        return body[:i] + b"b" + body[i + 1:]
    r = put_chunked(server, creds, bucket, "tampered", lambda s: signed_chunks(s, data, 65536),
                    mode, len(data), tamper=flip)
    assert r.status_code == 403 and xml_error(r)["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="tampered")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # a dropped chunk breaks the chain too
    r = put_chunked(server, creds, bucket, "dropped", lambda s: signed_chunks(s, data, 65536),
                    mode, len(data) - 65536,
                    tamper=lambda b: b[b.index(b"\r\n") + 2 + 65536 + 2:])
    assert r.status_code == 403 and xml_error(r)["Code"] == "SignatureDoesNotMatch"


def test_streaming_signed_with_trailer(server, s3, creds, bucket):
    data = os.urandom(70_000)
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    extra = {"x-amz-trailer": "x-amz-checksum-crc32"}
    trailer = {"x-amz-checksum-crc32": b64crc32(data)}
    r = put_chunked(server, creds, bucket, "trailer",
                    lambda s: signed_chunks(s, data, 32768, trailer), mode, len(data), extra)
    assert r.status_code == 200, r.text
    assert r.headers["x-amz-checksum-crc32"] == trailer["x-amz-checksum-crc32"]
    bad = {"x-amz-checksum-crc32": b64crc32(b"other")}
    r = put_chunked(server, creds, bucket, "trailer2",
                    lambda s: signed_chunks(s, data, 32768, bad), mode, len(data), extra)
    assert r.status_code == 400 and xml_error(r)["Code"] == "BadDigest"
    r = put_chunked(server, creds, bucket, "trailer3",
                    lambda s: signed_chunks(s, data, 32768, trailer), mode, len(data), extra,
                    tamper=lambda b: b.replace(trailer["x-amz-checksum-crc32"].encode(),
                                               bad["x-amz-checksum-crc32"].encode()))
    assert r.status_code == 403 and xml_error(r)["Code"] == "SignatureDoesNotMatch"


def test_unsigned_payload_trailer_as_boto3_encodes_it(server, s3, creds, bucket):
    data = os.urandom(3 * 1024 * 1024 + 17)
    body = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=Crc32Checksum,
                             checksum_name="x-amz-checksum-crc32").read()
    extra = {"x-amz-trailer": "x-amz-checksum-crc32"}
    mode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    r = put_chunked(server, creds, bucket, "unsigned", body, mode, len(data), extra)
    assert r.status_code == 200, r.text
    assert r.headers["x-amz-checksum-crc32"] == b64crc32(data)
    assert s3.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == data
    wrong = body.replace(b64crc32(data).encode(), b64crc32(b"x").encode())
    r = put_chunked(server, creds, bucket, "unsigned2", wrong, mode, len(data), extra)
    assert r.status_code == 400 and xml_error(r)["Code"] == "BadDigest"
    r = put_chunked(server, creds, bucket, "unsigned3", body[:-40], mode, len(data), extra)
    assert r.status_code == 400 and xml_error(r)["Code"] == "IncompleteBody"


def test_boto3_default_trailer_checksums(server, monkeypatch, bucket):
    """What boto3 >= 1.36 sends over https (aws-chunked, CRC32 trailer), sent here over http."""
    monkeypatch.setattr(botocore.httpchecksum, "urlparse",
                        lambda url: urlparse(url.replace("http://", "https://", 1)))
    s3 = s3_client(server)
    seen = []
    s3.meta.events.register("before-send.s3.*", lambda request, **kw: seen.append(
        (request.headers.get("X-Amz-Content-SHA256"), request.headers.get("Content-Encoding"))))
    data = os.urandom(1_500_000)
    r = s3.put_object(Bucket=bucket, Key="boto-trailer", Body=data)
    assert seen[-1] == (b"STREAMING-UNSIGNED-PAYLOAD-TRAILER", b"aws-chunked")
    assert r["ChecksumCRC32"] == b64crc32(data)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="boto-mpu")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="boto-mpu", UploadId=uid, PartNumber=1, Body=data)
    assert part["ChecksumCRC32"] == b64crc32(data)
    s3.complete_multipart_upload(Bucket=bucket, Key="boto-mpu", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32": b64crc32(data)}]})
    assert s3.get_object(Bucket=bucket, Key="boto-mpu")["Body"].read() == data


def test_payload_hash_mismatch(server, creds, bucket):
    url = f"{server.url}/{bucket}/hash"
    signed = sign("PUT", url, *creds, hashlib.sha256(b"expected").hexdigest())
    r = httpx.put(url, content=b"something else", headers=signed.headers)
    assert r.status_code == 400 and xml_error(r)["Code"] == "XAmzContentSHA256Mismatch"


def test_clock_skew(server, creds, bucket):
    url = f"{server.url}/{bucket}?list-type=2"
    old = datetime.now(UTC) - timedelta(minutes=20)
    r = httpx.get(url, headers=sign("GET", url, *creds, EMPTY_SHA256, when=old).headers)
    assert r.status_code == 403 and xml_error(r)["Code"] == "RequestTimeTooSkewed"
    fine = datetime.now(UTC) - timedelta(minutes=10)
    r = httpx.get(url, headers=sign("GET", url, *creds, EMPTY_SHA256, when=fine).headers)
    assert r.status_code == 200, r.text


def test_malformed_authorization(server, creds, bucket):
    url = f"{server.url}/{bucket}"
    scope = "20260101/us-east-1/s3/aws4_request"
    for auth, code in [
            (f"AWS4-HMAC-SHA256 Credential={creds[0]}/{scope}", "AuthorizationHeaderMalformed"),
            (f"AWS4-HMAC-SHA256 Credential={creds[0]}/{scope}, SignedHeaders=host, "
             "Signature=00", "InvalidRequest")]:  # no x-amz-content-sha256
        r = httpx.get(url, headers={"authorization": auth})
        assert r.status_code == 400 and xml_error(r)["Code"] == code, r.text


def test_delete_objects_needs_a_digest_and_good_xml(server, creds, bucket):
    url = f"{server.url}/{bucket}?delete"
    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    signed = sign("POST", url, *creds, hashlib.sha256(body).hexdigest())
    r = httpx.post(url, content=body, headers=signed.headers)
    assert r.status_code == 400 and xml_error(r)["Code"] == "InvalidRequest"
    for bad in (b"<Delete><Object>", b"<Delete></Delete>", b"<Wrong/>",
                b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>"):
        md5 = base64.b64encode(hashlib.md5(bad).digest()).decode()
        signed = sign("POST", url, *creds, hashlib.sha256(bad).hexdigest(), {"content-md5": md5})
        r = httpx.post(url, content=bad, headers=signed.headers)
        assert r.status_code == 400 and xml_error(r)["Code"] == "MalformedXML"


def test_credentials_file(server, creds):
    path = server.data_dir / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "[default]" in path.read_text() and creds[0].startswith("DF")


def test_entity_too_large_is_refused_before_the_body(server, creds, bucket):
    url = f"{server.url}/{bucket}/huge"
    size = 5 * 1024**3 + 1
    signed = sign("PUT", url, *creds, "UNSIGNED-PAYLOAD", {"content-length": str(size)})
    head = "".join(f"{k}: {v}\r\n" for k, v in signed.headers.items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"PUT /{bucket}/huge HTTP/1.1\r\n{head}\r\n".encode() + b"x" * 1024)
        reply = b""
        while b"</Error>" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 400") and b"<Code>EntityTooLarge</Code>" in reply
    assert b"connection: close" in reply.lower()  # the unread body cannot be the next request


@pytest.mark.parametrize("headers, query, expect", [
    ([(b"authorization", b"AWS4-HMAC-SHA256 Credential=K/20260101/us-east-1/s3/aws4_request, "
                         b"SignedHeaders=host, Signature=00")], b"", True),
    ([(b"authorization", b"AWS4-HMAC-SHA256 Credential=K/20260101/us-east-1/lambda/"
                         b"aws4_request, SignedHeaders=host, Signature=00")], b"", False),
    ([], b"X-Amz-Credential=K%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=1", True),
    ([], b"X-Amz-Credential=K%2F20260101%2Fus-east-1%2Flambda%2Faws4_request", False),
    ([(b"content-type", b"application/json")], b"Qualifier=s3", False),
])
def test_dispatch_by_signing_scope(headers, query, expect):
    scope = {"type": "http", "method": "GET", "path": "/b/k", "headers": headers,
             "query_string": query}
    assert (classify(scope, None).family is Family.S3) is expect
