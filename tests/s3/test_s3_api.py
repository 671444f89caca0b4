"""The S3 endpoint through boto3: buckets, objects, ranges, copies, listings, errors."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import httpx
import pytest
from botocore.exceptions import ClientError
from s3_helpers import error_code, new_bucket, s3_client, status, xml_error


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture
def bucket(s3):
    return new_bucket(s3)


def test_bucket_lifecycle(s3):
    s3.create_bucket(Bucket="life-cycle")
    assert s3.head_bucket(Bucket="life-cycle")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "life-cycle" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="life-cycle")
    assert (error_code(exc.value), status(exc.value)) == ("BucketAlreadyOwnedByYou", 409)
    s3.put_object(Bucket="life-cycle", Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="life-cycle")
    assert (error_code(exc.value), status(exc.value)) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket="life-cycle", Key="k")
    assert s3.delete_bucket(Bucket="life-cycle")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="life-cycle")
    assert status(exc.value) == 404
    assert s3.get_bucket_location(Bucket=new_bucket(s3))["LocationConstraint"] is None


@pytest.mark.parametrize("name", ["ab", "UPPER", "-dash", "dash-", "a..b", "192.168.1.1",
                                  "xn--abc", "x" * 64, "under_score"])
def test_invalid_bucket_names(s3, name):
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert (error_code(exc.value), status(exc.value)) == ("InvalidBucketName", 400)


def test_missing_bucket(s3):
    for call in (lambda: s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x"),
                 lambda: s3.list_objects_v2(Bucket="no-such-bucket"),
                 lambda: s3.get_object(Bucket="no-such-bucket", Key="k"),
                 lambda: s3.delete_bucket(Bucket="no-such-bucket")):
        with pytest.raises(ClientError) as exc:
            call()
        assert (error_code(exc.value), status(exc.value)) == ("NoSuchBucket", 404)


def test_put_get_head_with_metadata(s3, bucket):
    body = b"hello, dayfly\n" * 1000
    r = s3.put_object(Bucket=bucket, Key="dir/hello.txt", Body=body, ContentType="text/plain",
                      Metadata={"colour": "blue", "n": "1"}, CacheControl="max-age=60")
    assert r["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert r["ChecksumCRC32"] == crc  # boto3 sends CRC32 by default; S3 echoes it
    g = s3.get_object(Bucket=bucket, Key="dir/hello.txt", ChecksumMode="ENABLED")
    assert g["Body"].read() == body
    assert g["ContentType"] == "text/plain"
    assert g["Metadata"] == {"colour": "blue", "n": "1"}
    assert g["CacheControl"] == "max-age=60"
    assert g["ETag"] == r["ETag"] and g["ChecksumCRC32"] == crc
    h = s3.head_object(Bucket=bucket, Key="dir/hello.txt")
    assert h["ContentLength"] == len(body) and h["ETag"] == r["ETag"]
    assert h["Metadata"] == {"colour": "blue", "n": "1"}
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="dir/missing")
    assert (error_code(exc.value), status(exc.value)) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="dir/missing")
    assert status(exc.value) == 404


def test_empty_object_and_overwrite(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="e", Body=b"")
    assert r["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="e")["Body"].read() == b""
    s3.put_object(Bucket=bucket, Key="e", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="e")["Body"].read() == b"second"


def test_ranges(s3, bucket):
    body = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    for spec, expect, content_range in [
            ("bytes=2-5", body[2:6], "bytes 2-5/1024"),
            ("bytes=1000-", body[1000:], "bytes 1000-1023/1024"),
            ("bytes=-3", body[-3:], "bytes 1021-1023/1024"),
            ("bytes=1020-5000", body[1020:], "bytes 1020-1023/1024")]:
        g = s3.get_object(Bucket=bucket, Key="r", Range=spec)
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert g["ContentRange"] == content_range
        assert g["Body"].read() == expect
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=2000-")
    assert (error_code(exc.value), status(exc.value)) == ("InvalidRange", 416)


def test_conditional_get(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"abc")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"abc"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert status(exc.value) == 412
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert status(exc.value) == 304


def test_delete_object_and_objects(s3, bucket):
    for k in ("a", "b", "c", "d"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    assert s3.delete_object(Bucket=bucket, Key="a")["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.delete_object(Bucket=bucket, Key="never-existed")  # S3: not an error
    verbose = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}, {"Key": "zz"}]})
    assert sorted(d["Key"] for d in verbose["Deleted"]) == ["b", "zz"]
    assert not verbose.get("Errors")
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}, {"Key": "d"}],
                                                     "Quiet": True})
    assert not quiet.get("Deleted") and not quiet.get("Errors")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_copy_object(s3, bucket):
    other = new_bucket(s3)
    body = b"copy me" * 100
    s3.put_object(Bucket=bucket, Key="src", Body=body, Metadata={"a": "1"},
                  ContentType="text/x-src")
    r = s3.copy_object(Bucket=other, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    g = s3.get_object(Bucket=other, Key="dst")
    assert g["Body"].read() == body and g["Metadata"] == {"a": "1"}
    assert g["ContentType"] == "text/x-src"
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/y")
    h = s3.head_object(Bucket=bucket, Key="src")
    assert h["Metadata"] == {"b": "2"} and h["ContentType"] == "text/y"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert error_code(exc.value) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
    assert error_code(exc.value) == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="src")  # the copy has content of its own
    assert s3.get_object(Bucket=other, Key="dst")["Body"].read() == body


def test_list_objects_v2_prefix_delimiter_and_pages(s3, bucket):
    keys = ["a.txt", "dir/1", "dir/2", "dir/sub/3", "dz", "e/1", "e/2", "f"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [c["Key"] for c in r["Contents"]] == ["a.txt", "dz", "f"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir/", "e/"]
    assert r["KeyCount"] == 5
    r = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [c["Key"] for c in r["Contents"]] == ["dir/1", "dir/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir/sub/"]
    assert [c["Key"] for c in s3.list_objects_v2(Bucket=bucket, Prefix="d")["Contents"]] == \
        ["dir/1", "dir/2", "dir/sub/3", "dz"]
    assert [c["Key"] for c in s3.list_objects_v2(Bucket=bucket, StartAfter="dz")["Contents"]] \
        == ["e/1", "e/2", "f"]
    # pages of two, with and without a delimiter: every entry exactly once, in order
    for delimiter, expect in [("", keys), ("/", ["a.txt", "dir/", "dz", "e/", "f"])]:
        seen, token, pages = [], None, 0
        while True:
            kw = {"ContinuationToken": token} if token else {}
            page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, Delimiter=delimiter, **kw)
            pages += 1
            got = [c["Key"] for c in page.get("Contents", [])] + \
                [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            assert len(got) <= 2
            seen += sorted(got)
            if not page["IsTruncated"]:
                break
            token = page["NextContinuationToken"]
        assert seen == expect and pages == (len(expect) + 1) // 2
    paginator = s3.get_paginator("list_objects")  # v1, markers
    v1 = [c["Key"] for p in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 3})
          for c in p.get("Contents", [])]
    assert v1 == keys


def test_awkward_keys_round_trip(s3, bucket):
    keys = ["with space.txt", "plus+sign", "percent%41", "ünïcødé/ключ", "q?x=1&y", "a//b",
            "../../etc/passwd", "./dot", "tilde~", "#hash", "k" * 1024]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()
    listed = [c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda s: s.encode())
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_code(exc.value) == "KeyTooLongError"


def test_digests_are_checked(s3, bucket):
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="md5", Body=b"data", ContentMD5=wrong_md5)
    assert (error_code(exc.value), status(exc.value)) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="crc", Body=b"data", ChecksumCRC32="AAAAAA==")
    assert (error_code(exc.value), status(exc.value)) == ("BadDigest", 400)
    sha = base64.b64encode(hashlib.sha256(b"data").digest()).decode()
    r = s3.put_object(Bucket=bucket, Key="sha", Body=b"data", ChecksumSHA256=sha)
    assert r["ChecksumSHA256"] == sha
    crc32c = base64.b64encode(bytes.fromhex("e3069283")).decode()  # CRC32C("123456789")
    r = s3.put_object(Bucket=bucket, Key="crc32c", Body=b"123456789", ChecksumCRC32C=crc32c)
    assert r["ChecksumCRC32C"] == crc32c
    good = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    assert s3.put_object(Bucket=bucket, Key="md5", Body=b"data", ContentMD5=good)["ETag"]
    assert [c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]] == \
        ["crc32c", "md5", "sha"]


def test_unknown_operation_is_not_implemented(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert (error_code(exc.value), status(exc.value)) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
            "Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""},
                       "Expiration": {"Days": 1}}]})
    assert (error_code(exc.value), status(exc.value)) == ("NotImplemented", 501)


def test_presigned_get_and_put(s3, bucket):
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p/1"},
                                        ExpiresIn=300)
    r = httpx.put(put_url, content=b"via presigned put")
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{hashlib.md5(b"via presigned put").hexdigest()}"'
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p/1"},
                                        ExpiresIn=300)
    r = httpx.get(get_url)
    assert r.status_code == 200 and r.content == b"via presigned put"
    r = httpx.get(get_url.replace("/p/1?", "/p/2?"))  # another key: the signature breaks
    assert r.status_code == 403 and xml_error(r)["Code"] == "SignatureDoesNotMatch"
    r = httpx.get(get_url, headers={"Range": "bytes=4-12"})
    assert r.status_code == 206 and r.content == b"presigned"


def test_presigned_url_expires(s3, bucket):
    import time

    s3.put_object(Bucket=bucket, Key="soon", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "soon"},
                                    ExpiresIn=1)
    time.sleep(2.1)
    r = httpx.get(url)
    err = xml_error(r)
    assert r.status_code == 403 and err["Code"] == "AccessDenied"
    assert err["Message"] == "Request has expired"


def test_wrong_secret_and_unknown_key(server, bucket):
    from s3_helpers import credentials

    key_id, _ = credentials(server.data_dir)
    with pytest.raises(ClientError) as exc:
        s3_client(server, key_id, "not-the-secret").list_objects_v2(Bucket=bucket)
    assert (error_code(exc.value), status(exc.value)) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as exc:
        s3_client(server, "DFNOSUCHKEY000000000", "x").list_objects_v2(Bucket=bucket)
    assert (error_code(exc.value), status(exc.value)) == ("InvalidAccessKeyId", 403)


def test_error_document_shape(server, s3, bucket):
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "nothing"})
    r = httpx.get(url)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/xml")
    err = xml_error(r)
    assert err["Code"] == "NoSuchKey" and err["Key"] == "nothing"
    assert err["Resource"] == f"/{bucket}/nothing" and err["RequestId"]
    assert r.headers["x-amz-request-id"] == err["RequestId"]


def test_lambda_api_shares_the_port(server):
    lam = server.lambda_client()
    assert lam.list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200
    r = httpx.get(f"{server.url}/healthz")  # unsigned requests never reach the S3 endpoint
    assert r.status_code == 200


def test_a_body_of_many_tiny_http_chunks_arrives_whole(server, s3):
    """Transfer-Encoding: chunked, 20,000 chunks of 10 bytes sent at once (most reach the
    server in one receive), then a body of large chunks: each object holds its bytes."""
    import http.client
    from urllib.parse import urlsplit

    bucket = new_bucket(s3, "chunks")
    for key, size, count in (("tiny", 10, 20_000), ("large", 300_000, 40)):
        data = os.urandom(size * count)
        url = urlsplit(s3.generate_presigned_url("put_object",
                                                 Params={"Bucket": bucket, "Key": key}))
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        conn.putrequest("PUT", f"{url.path}?{url.query}", skip_accept_encoding=True)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"".join(b"%x\r\n%s\r\n" % (size, data[i:i + size])
                           for i in range(0, len(data), size)) + b"0\r\n\r\n")
        r = conn.getresponse()
        assert r.status == 200, r.read()
        conn.close()
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == data
        assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
