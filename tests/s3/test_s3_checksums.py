"""Flexible checksums as boto3 sends them (by default and asked for), on put, multipart
(composite and full-object) and get (x-amz-checksum-mode), and server-side encryption refused
with NotImplemented, never silently ignored: boto3 and the aws CLI against a real server."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zlib

import pytest
from botocore.exceptions import ClientError
from s3_helpers import aws_cli, error_code, new_bucket, s3_client, status

from dayfly.stores import checksums

pytest.importorskip("awscrt", reason="botocore needs awscrt for CRC32C and CRC64NVME")

MiB = 1024 * 1024
ALGORITHMS = ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME")


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture
def bucket(s3):
    return new_bucket(s3, "sums")


def reference(alg: str, data: bytes) -> str:
    """The checksum computed here, not by the server: zlib, hashlib, awscrt."""
    from awscrt import checksums as crt

    raw = {"CRC32": lambda: zlib.crc32(data).to_bytes(4, "big"),
           "CRC32C": lambda: crt.crc32c(data).to_bytes(4, "big"),
           "CRC64NVME": lambda: crt.crc64nvme(data).to_bytes(8, "big"),
           "SHA1": lambda: hashlib.sha1(data).digest(),
           "SHA256": lambda: hashlib.sha256(data).digest()}[alg]()
    return base64.b64encode(raw).decode()


def test_reference_vectors():
    """The server's own CRC tables agree with the published check values."""
    for alg, check in (("crc32c", 0xE3069283), ("crc64nvme", 0xAE8B14860A799888)):
        d = checksums._Crc32c() if alg == "crc32c" else checksums._Crc64Nvme()
        d.crt = None  # the pure-Python fallback
        d.update(b"123456789")
        assert int.from_bytes(d.digest(), "big") == check


def test_default_put_is_crc32_and_read_back(s3, bucket):
    data = os.urandom(100_000)
    put = s3.put_object(Bucket=bucket, Key="default", Body=data)  # boto3's default: CRC32
    assert put["ChecksumCRC32"] == reference("CRC32", data)
    got = s3.get_object(Bucket=bucket, Key="default", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert (got["ChecksumCRC32"], got["ChecksumType"]) == (reference("CRC32", data),
                                                           "FULL_OBJECT")
    # (boto3 asks for x-amz-checksum-mode by default and validates the body against it)
    ranged = s3.get_object(Bucket=bucket, Key="default", Range="bytes=0-9",
                           ChecksumMode="ENABLED")
    assert ranged["Body"].read() == data[:10] and "ChecksumCRC32" not in ranged


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_put_each_algorithm(s3, bucket, alg):
    data = os.urandom(70_000)
    put = s3.put_object(Bucket=bucket, Key=alg, Body=data, ChecksumAlgorithm=alg)
    assert put[f"Checksum{alg}"] == reference(alg, data)
    head = s3.head_object(Bucket=bucket, Key=alg, ChecksumMode="ENABLED")
    assert head[f"Checksum{alg}"] == reference(alg, data)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=alg)["Contents"][0]
    assert listed["ChecksumAlgorithm"] == [alg]
    # a checksum that does not match the body is refused and nothing is stored
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key=f"bad-{alg}", Body=data,
                      **{f"Checksum{alg}": reference(alg, b"other")})
    assert (error_code(exc.value), status(exc.value)) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=f"bad-{alg}")
    assert status(exc.value) == 404


@pytest.mark.parametrize("alg", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_multipart_composite(s3, bucket, alg):
    parts = [os.urandom(5 * MiB), os.urandom(1234)]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="c", ChecksumAlgorithm=alg,
                                     ChecksumType="COMPOSITE")["UploadId"]
    done = []
    for n, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=n, Body=p,
                           ChecksumAlgorithm=alg)
        assert r[f"Checksum{alg}"] == reference(alg, p)
        done.append({"PartNumber": n, "ETag": r["ETag"], f"Checksum{alg}": r[f"Checksum{alg}"]})
    out = s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=uid,
                                       MultipartUpload={"Parts": done})
    joined = b"".join(base64.b64decode(reference(alg, p)) for p in parts)
    expected = f"{reference(alg, joined)}-2"
    assert (out[f"Checksum{alg}"], out["ChecksumType"]) == (expected, "COMPOSITE")
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head[f"Checksum{alg}"] == expected


@pytest.mark.parametrize("alg", ["CRC32", "CRC32C", "CRC64NVME"])
def test_multipart_full_object(s3, bucket, alg):
    parts = [os.urandom(5 * MiB), os.urandom(999)]
    whole = b"".join(parts)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="f", ChecksumAlgorithm=alg,
                                     ChecksumType="FULL_OBJECT")["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="f", UploadId=uid,
                                                     PartNumber=n, Body=p,
                                                     ChecksumAlgorithm=alg)["ETag"]}
            for n, p in enumerate(parts, 1)]
    out = s3.complete_multipart_upload(Bucket=bucket, Key="f", UploadId=uid,
                                       MultipartUpload={"Parts": done},
                                       **{f"Checksum{alg}": reference(alg, whole)},
                                       ChecksumType="FULL_OBJECT")
    assert (out[f"Checksum{alg}"], out["ChecksumType"]) == (reference(alg, whole),
                                                            "FULL_OBJECT")
    got = s3.get_object(Bucket=bucket, Key="f", ChecksumMode="ENABLED")
    assert got["Body"].read() == whole and got[f"Checksum{alg}"] == reference(alg, whole)


@pytest.mark.parametrize("kind, alg", [("COMPOSITE", "SHA256"), ("COMPOSITE", "CRC32C"),
                                       ("FULL_OBJECT", "CRC32")])
def test_a_part_read_back_carries_its_own_checksum(s3, bucket, kind, alg):
    """GET/HEAD ?partNumber= and a Range on a part's bounds answer that part's checksum (boto3
    validates the body against it); any other range answers none."""
    parts = [os.urandom(5 * MiB), os.urandom(4321)]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="p", ChecksumAlgorithm=alg,
                                     ChecksumType=kind)["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(
        Bucket=bucket, Key="p", UploadId=uid, PartNumber=n, Body=p, ChecksumAlgorithm=alg)[
        "ETag"], **({f"Checksum{alg}": reference(alg, p)} if kind == "COMPOSITE" else {})}
        for n, p in enumerate(parts, 1)]
    extra = {f"Checksum{alg}": reference(alg, b"".join(parts)), "ChecksumType": kind} \
        if kind == "FULL_OBJECT" else {}
    s3.complete_multipart_upload(Bucket=bucket, Key="p", UploadId=uid,
                                 MultipartUpload={"Parts": done}, **extra)
    for n, p in enumerate(parts, 1):
        got = s3.get_object(Bucket=bucket, Key="p", PartNumber=n, ChecksumMode="ENABLED")
        assert got["Body"].read() == p and got[f"Checksum{alg}"] == reference(alg, p)
        assert got["PartsCount"] == 2
        head = s3.head_object(Bucket=bucket, Key="p", PartNumber=n, ChecksumMode="ENABLED")
        assert head[f"Checksum{alg}"] == reference(alg, p)
    aligned = s3.get_object(Bucket=bucket, Key="p", Range=f"bytes={5 * MiB}-{5 * MiB + 4320}",
                            ChecksumMode="ENABLED")
    assert aligned["Body"].read() == parts[1]
    assert aligned[f"Checksum{alg}"] == reference(alg, parts[1])
    for rng in (f"bytes=0-{5 * MiB}", "bytes=1-5242879", f"bytes={5 * MiB}-{5 * MiB + 99}"):
        got = s3.get_object(Bucket=bucket, Key="p", Range=rng, ChecksumMode="ENABLED")
        assert f"Checksum{alg}" not in got, rng
        got["Body"].read()
    # without x-amz-checksum-mode, nothing
    assert f"Checksum{alg}" not in s3.head_object(Bucket=bucket, Key="p", PartNumber=1)


def test_single_part_object_part_one_and_whole_range(s3, bucket, tmp_path, server):
    data = os.urandom(10_000)
    s3.put_object(Bucket=bucket, Key="one", Body=data, ChecksumAlgorithm="SHA1")
    got = s3.get_object(Bucket=bucket, Key="one", PartNumber=1, ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumSHA1"] == reference("SHA1", data)
    whole = s3.get_object(Bucket=bucket, Key="one", Range="bytes=0-9999",
                          ChecksumMode="ENABLED")
    assert whole["Body"].read() == data and whole["ChecksumSHA1"] == reference("SHA1", data)
    aws = aws_cli(server, tmp_path, check=True)
    out = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "one",
                         "--range", "bytes=0-9999", "--checksum-mode", "ENABLED",
                         str(tmp_path / "out")).stdout)
    assert out["ChecksumSHA1"] == reference("SHA1", data)
    assert (tmp_path / "out").read_bytes() == data


def test_upload_fileobj_default_checksums(s3, bucket):
    """boto3's managed transfer (multipart above 8 MiB) with its default checksums."""
    data = os.urandom(20 * MiB)
    s3.upload_fileobj(io.BytesIO(data), bucket, "managed")
    out = io.BytesIO()
    s3.download_fileobj(bucket, "managed", out)
    assert out.getvalue() == data
    head = s3.head_object(Bucket=bucket, Key="managed", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    if "ChecksumCRC32" in head and head.get("ChecksumType") == "FULL_OBJECT":
        assert head["ChecksumCRC32"] == reference("CRC32", data)


def test_aws_cli_checksum(server, s3, bucket, tmp_path):
    aws = aws_cli(server, tmp_path, check=True)
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(300_000))
    out = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "cli", "--body",
                         str(f), "--checksum-algorithm", "SHA256").stdout)
    assert out["ChecksumSHA256"] == reference("SHA256", f.read_bytes())
    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "cli",
                          "--checksum-mode", "ENABLED").stdout)
    assert head["ChecksumSHA256"] == reference("SHA256", f.read_bytes())


@pytest.mark.parametrize("kw", [
    {"ServerSideEncryption": "aws:kms"}, {"ServerSideEncryption": "aws:kms:dsse"},
    {"ServerSideEncryption": "AES256", "ChecksumAlgorithm": "SHA256", "Tagging": "a=b"},
])
def test_encryption_refused_not_ignored(s3, bucket, kw):
    """(SSE-S3 and SSE-C themselves are in test_s3_encryption.py)"""
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="secret", Body=b"x", **kw)
    assert (error_code(exc.value), status(exc.value)) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="secret")
    assert status(exc.value) == 404


@pytest.mark.parametrize("kw", [{"Tagging": "a=b"}, {"StorageClass": "GLACIER"},
                                {"ObjectLockMode": "GOVERNANCE"},
                                {"WebsiteRedirectLocation": "/elsewhere"}])
def test_unimplemented_headers_refused(s3, bucket, kw):
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="asked", Body=b"x", **kw)
    assert (error_code(exc.value), status(exc.value)) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="asked", **kw)
    assert error_code(exc.value) == "NotImplemented"


def test_mp_object_size_checked(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="sized")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="sized", UploadId=uid, PartNumber=1,
                          Body=b"12345")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="sized", UploadId=uid,
                                     MultipartUpload=parts, MpuObjectSize=6)
    assert error_code(exc.value) == "InvalidRequest"
    s3.complete_multipart_upload(Bucket=bucket, Key="sized", UploadId=uid,
                                 MultipartUpload=parts, MpuObjectSize=5)
