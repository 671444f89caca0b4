"""Hostile numbers and header values get S3's precise 4xx errors, never a 500 or a 501: digits
`str.isdigit` takes and `int` refuses ('²'), integers of thousands of digits (past `int`'s
4,300), non-ASCII checksums, storage classes and ACLs that do not exist."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from s3_helpers import credentials, new_bucket, s3_client, sign, xml_error

HUGE = "9" * 5000
SUP2 = "%C2%B2"  # '²', percent-encoded in a query


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture(scope="module")
def bucket(s3):
    name = new_bucket(s3, "hostile")
    s3.put_object(Bucket=name, Key="k", Body=b"0123456789")
    parts = [b"x" * (5 * 1024 * 1024), b"y"]
    upload = s3.create_multipart_upload(Bucket=name, Key="mp")["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=name, Key="mp", UploadId=upload,
                                                     PartNumber=n, Body=p)["ETag"]}
            for n, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=name, Key="mp", UploadId=upload,
                                 MultipartUpload={"Parts": done})
    return name


@pytest.fixture(scope="module")
def upload(s3, bucket):
    return s3.create_multipart_upload(Bucket=bucket, Key="open")["UploadId"]


def signed(server, method: str, path: str, body: bytes = b"") -> httpx.Response:
    url = f"{server.url}{path}"
    headers = sign(method, url, *credentials(server.data_dir),
                   hashlib.sha256(body).hexdigest()).headers
    return httpx.request(method, url, headers=headers, content=body)


def refused(r: httpx.Response, code: str, status: int = 400) -> None:
    assert (r.status_code, xml_error(r)["Code"]) == (status, code), r.text


@pytest.mark.parametrize("path, code", [
    ("/{b}/k?partNumber=" + SUP2, "InvalidArgument"),
    ("/{b}/k?partNumber=" + HUGE, "InvalidArgument"),
    ("/{b}?list-type=2&max-keys=" + SUP2, "InvalidArgument"),
    ("/{b}?list-type=2&max-keys=" + HUGE, "InvalidArgument"),
    ("/{b}?versions&max-keys=" + HUGE, "InvalidArgument"),
    ("/{b}?uploads&max-uploads=" + SUP2, "InvalidArgument"),
    ("/{b}?uploads&max-uploads=" + HUGE, "InvalidArgument"),
    ("/{b}/open?uploadId={u}&max-parts=" + HUGE, "InvalidArgument"),
    ("/{b}/open?uploadId={u}&part-number-marker=" + SUP2, "InvalidArgument"),
    ("/?max-buckets=" + HUGE, "InvalidArgument"),
])
def test_query_numbers(server, bucket, upload, path, code):
    refused(signed(server, "GET", path.format(b=bucket, u=upload)), code)


@pytest.mark.parametrize("number", [SUP2, HUGE])
def test_part_numbers_of_upload_part_and_complete(server, bucket, upload, number):
    refused(signed(server, "PUT", f"/{bucket}/open?uploadId={upload}&partNumber={number}",
                   b"x"), "InvalidArgument")
    xml = (f"<CompleteMultipartUpload><Part><PartNumber>{number.replace(SUP2, '²')}"
           "</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>").encode()
    refused(signed(server, "POST", f"/{bucket}/open?uploadId={upload}", xml), "MalformedXML")


@pytest.mark.parametrize("age", ["²", HUGE])
def test_cors_max_age(server, bucket, age):
    xml = ("<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET"
           f"</AllowedMethod><MaxAgeSeconds>{age}</MaxAgeSeconds></CORSRule>"
           "</CORSConfiguration>").encode()
    refused(signed(server, "PUT", f"/{bucket}?cors", xml), "MalformedXML")


@pytest.mark.parametrize("expires", [SUP2, HUGE])
def test_presigned_expires(s3, bucket, expires):
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert "X-Amz-Expires=3600" in url
    refused(httpx.get(url.replace("X-Amz-Expires=3600", f"X-Amz-Expires={expires}")),
            "AuthorizationQueryParametersError")


@pytest.mark.parametrize("headers, code", [
    ({"x-amz-checksum-crc32": b"\xff\xfe"}, "InvalidRequest"),
    ({"x-amz-checksum-sha256": b"\xb2"}, "InvalidRequest"),
    ({"content-md5": b"\xff"}, "InvalidDigest"),
    ({"x-amz-storage-class": b"\xff"}, "InvalidStorageClass"),
    ({"x-amz-storage-class": b"CHEAP"}, "InvalidStorageClass"),
    ({"x-amz-acl": b"\xff"}, "InvalidArgument"),
    ({"x-amz-acl": b"everyone-may-write"}, "InvalidArgument"),
])
def test_put_headers(s3, bucket, headers, code):
    """Headers a presigned URL does not sign, with bytes no client library would send."""
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "put"})
    refused(httpx.put(url, headers=headers, content=b"body"), code)


@pytest.mark.parametrize("headers", [
    {"x-amz-max-parts": HUGE.encode()}, {"x-amz-part-number-marker": b"\xb2"},
    {"x-amz-max-parts": b"-1"},
])
def test_object_attributes_headers(s3, bucket, headers):
    url = s3.generate_presigned_url("get_object_attributes", Params={
        "Bucket": bucket, "Key": "mp", "ObjectAttributes": ["ObjectParts"]})
    refused(httpx.get(url, headers={"x-amz-object-attributes": b"ObjectParts", **headers}),
            "InvalidArgument")


@pytest.mark.parametrize("spec", [b"bytes=\xb2-", b"bytes=-\xb2", b"bytes=0-" + HUGE.encode()])
def test_ranges_s3_cannot_read_are_ignored(s3, bucket, spec):
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    r = httpx.get(url, headers={"range": spec})
    assert (r.status_code, r.content) == (200, b"0123456789")
