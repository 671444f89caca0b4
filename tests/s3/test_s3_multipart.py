"""Multipart uploads through boto3: S3's ETags and checksums, listing, aborts, part rules."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zlib

import httpx
import pytest
from botocore.exceptions import ClientError
from s3_helpers import (
    aws_cli,
    credentials,
    error_code,
    new_bucket,
    s3_client,
    sign,
    status,
    xml_error,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture
def bucket(s3):
    return new_bucket(s3, "mpu")


def multipart_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def test_upload_fileobj_goes_multipart(s3, bucket, tmp_path):
    data = os.urandom(20 * MiB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    with path.open("rb") as f:
        s3.upload_fileobj(f, bucket, "big.bin")  # s3transfer: 8 MiB parts, CRC32 by default
    head = s3.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    parts = [data[:8 * MiB], data[8 * MiB:16 * MiB], data[16 * MiB:]]
    assert head["ETag"] == multipart_etag(parts)
    assert head["ContentLength"] == len(data)
    composite = base64.b64encode(zlib.crc32(b"".join(crc32(p) for p in parts))
                                 .to_bytes(4, "big")).decode() + "-3"
    assert head["ChecksumCRC32"] == composite and head["ChecksumType"] == "COMPOSITE"
    out = io.BytesIO()
    s3.download_fileobj(bucket, "big.bin", out)
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data).digest()


def test_manual_multipart_with_list_parts(s3, bucket):
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="m", ContentType="application/x-m",
                                    Metadata={"k": "v"})
    uid = up["UploadId"]
    assert s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["UploadId"] == uid
    etags = []
    for n, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=n, Body=p)
        assert r["ETag"] == f'"{hashlib.md5(p).hexdigest()}"'
        etags.append(r["ETag"])
    first = s3.list_parts(Bucket=bucket, Key="m", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2] and first["IsTruncated"]
    rest = s3.list_parts(Bucket=bucket, Key="m", UploadId=uid,
                         PartNumberMarker=first["NextPartNumberMarker"])
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in rest["Parts"]] == \
        [(3, 4, etags[2])]
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key="m", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in
                                   enumerate(etags, 1)]})
    assert r["ETag"] == multipart_etag(parts)
    g = s3.get_object(Bucket=bucket, Key="m")
    assert g["Body"].read() == b"".join(parts)
    assert g["ContentType"] == "application/x-m" and g["Metadata"] == {"k": "v"}
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    g = s3.get_object(Bucket=bucket, Key="m", Range="bytes=5242878-5242881")
    assert g["Body"].read() == parts[0][-2:] + parts[1][:2]


def test_full_object_crc32(s3, bucket):
    parts = [os.urandom(5 * MiB), b"end"]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="f", ChecksumAlgorithm="CRC32",
                                     ChecksumType="FULL_OBJECT")["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="f", UploadId=uid,
                                                     PartNumber=n, Body=p)["ETag"]}
            for n, p in enumerate(parts, 1)]
    r = s3.complete_multipart_upload(Bucket=bucket, Key="f", UploadId=uid,
                                     MultipartUpload={"Parts": done})
    whole = base64.b64encode(crc32(b"".join(parts))).decode()
    assert r["ChecksumCRC32"] == whole and r["ChecksumType"] == "FULL_OBJECT"


def test_abort(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="a")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="a", UploadId=uid, PartNumber=1, Body=b"x")["ETag"]
    assert s3.abort_multipart_upload(Bucket=bucket, Key="a", UploadId=uid)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (lambda: s3.list_parts(Bucket=bucket, Key="a", UploadId=uid),
                 lambda: s3.complete_multipart_upload(
                     Bucket=bucket, Key="a", UploadId=uid,
                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}),
                 lambda: s3.upload_part(Bucket=bucket, Key="a", UploadId="made-up",
                                        PartNumber=1, Body=b"x")):
        with pytest.raises(ClientError) as exc:
            call()
        assert (error_code(exc.value), status(exc.value)) == ("NoSuchUpload", 404)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_part_rules(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="r")["UploadId"]
    for bad in (0, 10001):
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=bucket, Key="r", UploadId=uid, PartNumber=bad, Body=b"x")
        assert (error_code(exc.value), status(exc.value)) == ("InvalidArgument", 400)
    small = s3.upload_part(Bucket=bucket, Key="r", UploadId=uid, PartNumber=1, Body=b"small")
    last = s3.upload_part(Bucket=bucket, Key="r", UploadId=uid, PartNumber=2, Body=b"last")
    cases = [
        ([(2, last["ETag"]), (1, small["ETag"])], "InvalidPartOrder"),
        ([(1, '"00000000000000000000000000000000"')], "InvalidPart"),
        ([(1, small["ETag"]), (3, last["ETag"])], "InvalidPart"),
        ([(1, small["ETag"]), (2, last["ETag"])], "EntityTooSmall"),
    ]
    for chosen, code in cases:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="r", UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in chosen]})
        assert (error_code(exc.value), status(exc.value)) == (code, 400), chosen
    # one part may be small: it is the last one
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key="r", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small["ETag"]}]})
    assert r["ETag"] == multipart_etag([b"small"])
    assert s3.get_object(Bucket=bucket, Key="r")["Body"].read() == b"small"


def test_upload_part_copy(s3, bucket):
    src = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    p2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes={5 * MiB}-{6 * MiB - 1}")
    assert p1["CopyPartResult"]["ETag"] == f'"{hashlib.md5(src[:5 * MiB]).hexdigest()}"'
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=3,
                            CopySource={"Bucket": bucket, "Key": "src"},
                            CopySourceRange=f"bytes=0-{6 * MiB}")
    assert error_code(exc.value) == "InvalidArgument"
    s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == src


@pytest.mark.parametrize("body", [b"<CompleteMultipartUpload><Part>", b"not xml at all",
                                  b"<Other/>", b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
                                  b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber>"
                                  b"<ETag>e</ETag></Part></CompleteMultipartUpload>"])
def test_malformed_complete_xml(server, s3, bucket, body):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="x")["UploadId"]
    key_id, secret = credentials(server.data_dir)
    url = f"{server.url}/{bucket}/x?uploadId={uid}"
    signed = sign("POST", url, key_id, secret, hashlib.sha256(body).hexdigest())
    r = httpx.post(url, content=body, headers=signed.headers)
    assert r.status_code == 400 and xml_error(r)["Code"] == "MalformedXML"


def _uploads(s3, bucket: str) -> list[tuple[str, str]]:
    """(key, upload id) of uploads begun in this order: two for one key, a folder, the rest."""
    made = []
    for key in ("a", "a", "dir/x", "dir/y", "e", "sp ace/\u00e9"):
        made.append((key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]))
    return made


def test_list_uploads_pages_by_key_and_upload_markers(s3, bucket):
    made = _uploads(s3, bucket)
    pages = list(s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3 and [p["IsTruncated"] for p in pages] == [True, True, False]
    assert [(u["Key"], u["UploadId"]) for p in pages for u in p["Uploads"]] == made
    assert (pages[0]["NextKeyMarker"], pages[0]["NextUploadIdMarker"]) == made[1]
    # the first upload of "a" named as the marker: its second one comes next
    page = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a", UploadIdMarker=made[0][1],
                                     MaxUploads=2)
    assert [u["UploadId"] for u in page["Uploads"]] == [made[1][1], made[2][1]]
    assert page["KeyMarker"] == "a" and page["UploadIdMarker"] == made[0][1]
    # a key marker alone: the keys after it
    page = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a")
    assert [u["Key"] for u in page["Uploads"]] == ["dir/x", "dir/y", "e", "sp ace/\u00e9"]


def test_list_uploads_prefix_delimiter_and_encoding(server, s3, bucket):
    made = _uploads(s3, bucket)
    page = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in page["Uploads"]] == ["a", "a", "e"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir/", "sp ace/"]
    assert page["Delimiter"] == "/"
    # a common prefix counts as one entry of a page, and is not listed again after it
    first = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", MaxUploads=3)
    assert first["IsTruncated"] and first["NextKeyMarker"] == "dir/"
    rest = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/",
                                     KeyMarker=first["NextKeyMarker"])
    assert [u["Key"] for u in rest["Uploads"]] == ["e"]
    assert [p["Prefix"] for p in rest["CommonPrefixes"]] == ["sp ace/"]
    page = s3.list_multipart_uploads(Bucket=bucket, Prefix="dir/")
    assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == made[2:4]
    assert page["Prefix"] == "dir/"
    # encoding-type=url encodes keys and prefixes (botocore does not decode this answer)
    creds = credentials(server.data_dir)
    url = f"{server.url}/{bucket}?uploads&encoding-type=url&prefix=sp%20"
    r = httpx.get(url, headers=sign("GET", url, *creds, "UNSIGNED-PAYLOAD").headers)
    assert r.status_code == 200
    assert "<Key>sp%20ace/%C3%A9</Key>" in r.text and "<Prefix>sp%20</Prefix>" in r.text
    assert s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0).get("Uploads") is None
    with pytest.raises(ClientError) as exc:
        s3.list_multipart_uploads(Bucket=bucket, EncodingType="base64")
    assert (error_code(exc.value), status(exc.value)) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:
        s3.list_multipart_uploads(Bucket=bucket, MaxUploads=-1)
    assert (error_code(exc.value), status(exc.value)) == ("InvalidArgument", 400)


def test_aws_cli_lists_every_upload_page_by_page(server, s3, bucket, tmp_path):
    made = _uploads(s3, bucket)
    aws = aws_cli(server, tmp_path, check=True)
    out = json.loads(aws("s3api", "list-multipart-uploads", "--bucket", bucket,
                         "--page-size", "2").stdout)
    assert [(u["Key"], u["UploadId"]) for u in out["Uploads"]] == made
