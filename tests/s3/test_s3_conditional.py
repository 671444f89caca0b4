"""Conditional writes and the S3 edges issue 17 listed, through boto3, the aws CLI and raw
signed requests against a real server."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from s3_helpers import (
    EMPTY_SHA256,
    REGION,
    aws_cli,
    credentials,
    error_code,
    hmac_hex,
    new_bucket,
    s3_client,
    signing_key,
    status,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture
def bucket(s3):
    return new_bucket(s3, "cond")


def test_put_if_none_match(s3, bucket):
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert (error_code(exc.value), status(exc.value)) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_put_if_none_match_race(s3, bucket):
    """Many writers of the same new key with If-None-Match: * at once: exactly one wins."""
    def put(i: int) -> str:
        try:
            s3.put_object(Bucket=bucket, Key="raced", Body=b"%d" % i, IfNoneMatch="*")
            return "won"
        except ClientError as e:
            return error_code(e)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(put, range(16)))
    assert results.count("won") == 1 and set(results) == {"won", "PreconditionFailed"}


def test_put_if_match(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch='"' + "0" * 32 + '"')
    assert (error_code(exc.value), status(exc.value)) == ("PreconditionFailed", 412)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="missing", Body=b"x", IfMatch=etag)
    assert (error_code(exc.value), status(exc.value)) == ("NoSuchKey", 404)


def test_complete_multipart_conditions_and_again(s3, bucket):
    s3.put_object(Bucket=bucket, Key="mp", Body=b"there")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    parts = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n,
                            Body=os.urandom(size))["ETag"]
             for n, size in ((1, 5 * MiB), (2, 1000))]
    chosen = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(parts, 1)]}
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                     MultipartUpload=chosen, IfNoneMatch="*")
    assert error_code(exc.value) == "PreconditionFailed"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                        MultipartUpload=chosen)
    # completing it again answers as the first time did
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                         MultipartUpload=chosen)
    assert again["ETag"] == done["ETag"] and done["ETag"].endswith('-2"')
    # GET ?partNumber= and GetObjectAttributes see the parts
    p1 = s3.get_object(Bucket=bucket, Key="mp", PartNumber=1)
    assert p1["ContentLength"] == 5 * MiB and p1["PartsCount"] == 2
    assert p1["ContentRange"] == f"bytes 0-{5 * MiB - 1}/{5 * MiB + 1000}"
    p2 = s3.head_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert p2["ContentLength"] == 1000 and p2["ResponseMetadata"]["HTTPStatusCode"] == 206
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=3)
    assert (error_code(exc.value), status(exc.value)) == ("InvalidPartNumber", 416)
    attrs = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=[
        "ETag", "ObjectParts", "ObjectSize", "StorageClass"])
    assert attrs["ETag"] == done["ETag"].strip('"') and attrs["ObjectSize"] == 5 * MiB + 1000
    assert attrs["ObjectParts"]["TotalPartsCount"] == 2
    assert [p["Size"] for p in attrs["ObjectParts"]["Parts"]] == [5 * MiB, 1000]
    # a single-part object has part 1 only
    s3.put_object(Bucket=bucket, Key="single", Body=b"abc")
    assert s3.get_object(Bucket=bucket, Key="single", PartNumber=1)["Body"].read() == b"abc"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert status(exc.value) == 416


def test_not_modified_carries_etag(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"cached")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", IfNoneMatch=etag)
    assert status(exc.value) == 304
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag


def test_listing_edges(s3, bucket):
    for key in ("a b/1", "a b/2", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    zero = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert zero["IsTruncated"] is False and zero["KeyCount"] == 0 and "Contents" not in zero
    empty = s3.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert [o["Key"] for o in empty["Contents"]] == ["a b/1", "a b/2", "c"]
    # botocore asks v1 for encoding-type=url and does not decode Prefix: S3 leaves it as sent
    v1 = s3.list_objects(Bucket=bucket, Prefix="a b/")
    assert v1["Prefix"] == "a b/" and [o["Key"] for o in v1["Contents"]] == ["a b/1", "a b/2"]


def test_list_buckets_pages(s3):
    names = sorted(new_bucket(s3, "pagelb") for _ in range(3))
    seen, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_buckets(MaxBuckets=2, Prefix="pagelb-", **kw)
        seen += [b["Name"] for b in page["Buckets"]]
        assert len(page["Buckets"]) <= 2
        token = page.get("ContinuationToken")
        if not token:
            break
    assert seen == sorted(seen) and set(names) <= set(seen)
    assert all(n.startswith("pagelb-") for n in seen)


def test_location_constraint_kept(s3):
    s3.create_bucket(Bucket="located-bucket",
                     CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    assert s3.get_bucket_location(Bucket="located-bucket")["LocationConstraint"] == \
        "eu-central-1"


def _sign_raw(server, method: str, url: str, extra: dict[str, bytes], date_header: bool):
    """Headers as bytes for a SigV4 request whose canonical request is built from bytes (as a
    client that sends UTF-8 header values signs them), dated by x-amz-date or by Date."""
    key_id, secret = credentials(server.data_dir)
    now = datetime.now(UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    parts = urlsplit(url)
    h = {"host": parts.netloc.encode(), "x-amz-content-sha256": EMPTY_SHA256.encode(), **extra}
    if date_header:
        h["date"] = formatdate(now.timestamp(), usegmt=True).encode()
    else:
        h["x-amz-date"] = stamp.encode()
    names = sorted(h)
    canonical = b"\n".join([method.encode(), parts.path.encode(), b"",
                            b"".join(n.encode() + b":" + h[n] + b"\n" for n in names),
                            ";".join(names).encode(), EMPTY_SHA256.encode()])
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical).hexdigest()])
    signature = hmac_hex(signing_key(secret, day), to_sign)
    h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={signature}").encode()
    return [(k.encode(), v) for k, v in h.items()]


def test_non_ascii_metadata_and_date_header(server, s3, bucket):
    """x-amz-meta-* values sent as UTF-8 bytes are signed as sent (no SignatureDoesNotMatch)
    and come back as those bytes; a request dated by Date (no x-amz-date) is accepted."""
    value = "héllo 日本 à".encode()
    url = f"{server.url}/{bucket}/meta"
    r = httpx.put(url, headers=_sign_raw(server, "PUT", url, {"x-amz-meta-name": value},
                                         False))
    assert r.status_code == 200, r.text
    got = httpx.head(s3.generate_presigned_url("head_object", Params={"Bucket": bucket,
                                                                       "Key": "meta"}))
    assert dict(got.headers.raw)[b"x-amz-meta-name"] == value
    r = httpx.get(url, headers=_sign_raw(server, "GET", url, {}, True))
    assert r.status_code == 200 and r.content == b"", r.text


def test_aws_cli_conditional_put(server, s3, tmp_path):
    aws = aws_cli(server, tmp_path)
    bucket = new_bucket(s3, "clicond")
    f = tmp_path / "f"
    f.write_bytes(b"data")
    first = aws("s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", str(f),
                "--if-none-match", "*")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["ETag"] == f'"{hashlib.md5(b"data").hexdigest()}"'
    second = aws("s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", str(f),
                 "--if-none-match", "*")
    assert second.returncode != 0 and "PreconditionFailed" in second.stderr
