"""Server-side encryption: SSE-S3 and SSE-C on PutObject, GetObject, HeadObject (ranges
included) from boto3, the aws CLI and presigned URLs, with the content encrypted at rest; what
is not implemented (SSE-KMS, DSSE-KMS, encryption on multipart uploads, SSE-C copies) is
refused with S3's errors, never answered as done,
and each refused write has stored nothing."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from s3_helpers import (
    REGION,
    aws_cli,
    credentials,
    error_code,
    new_bucket,
    s3_client,
    status,
    xml_error,
)

CUSTOMER_KEY = os.urandom(32)
SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": CUSTOMER_KEY}
COPY_SSE_C = {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": CUSTOMER_KEY}
KMS = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/dayfly-test"}


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture
def bucket(s3):
    return new_bucket(s3, "sse")


def refused(call, code: str = "NotImplemented", http: int = 501) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    assert status(info.value) == http, info.value.response
    assert error_code(info.value) in (code, str(http)), info.value.response  # HEAD: no body
    return info.value


def absent(s3, bucket: str, key: str) -> None:
    refused(lambda: s3.head_object(Bucket=bucket, Key=key), "NoSuchKey", 404)


@pytest.mark.parametrize("sse", [KMS, {"ServerSideEncryption": "aws:kms:dsse"}],
                         ids=["sse-kms", "dsse-kms"])
def test_put_asking_for_encryption_is_not_implemented_and_stores_nothing(s3, bucket, sse):
    exc = refused(lambda: s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"plain", **sse))
    assert "not implemented" in exc.response["Error"]["Message"]
    assert CUSTOMER_KEY.hex() not in str(exc.response)
    absent(s3, bucket, "secret.txt")
    # the same object without the request is stored, and reads back without any key
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"plain")
    assert s3.get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == b"plain"


def test_unknown_algorithms_are_invalid_arguments(s3, bucket):
    exc = refused(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                        ServerSideEncryption="AES128"), "InvalidArgument", 400)
    assert exc.response["Error"]["Message"] == "The encryption method specified is not supported"
    refused(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES128",
                                  SSECustomerKey=CUSTOMER_KEY),
            "InvalidEncryptionAlgorithmError", 400)
    # a KMS key named without aws:kms, as S3 answers it
    refused(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", SSEKMSKeyId="alias/x"),
            "InvalidArgument", 400)
    absent(s3, bucket, "k")


def test_copy_with_encryption_of_either_side_is_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    source = {"Bucket": bucket, "Key": "src"}
    for sse in (SSE_C, COPY_SSE_C, KMS):
        refused(lambda sse=sse: s3.copy_object(Bucket=bucket, Key="dst", CopySource=source,
                                               **sse))
    absent(s3, bucket, "dst")


def test_copy_of_a_plain_object_asking_for_sse_s3_is_encrypted(server, s3, bucket, tmp_path):
    plain = b"copied plaintext marker " + os.urandom(3 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="plain", Body=plain, Metadata={"m": "1"})
    copy = s3.copy_object(Bucket=bucket, Key="sealed", ServerSideEncryption="AES256",
                          CopySource={"Bucket": bucket, "Key": "plain"})
    assert copy["ServerSideEncryption"] == "AES256"
    assert copy["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(plain).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="sealed")
    assert got["Body"].read() == plain and got["ServerSideEncryption"] == "AES256"
    assert got["Metadata"] == {"m": "1"}
    assert s3.get_object(Bucket=bucket, Key="sealed", Range="bytes=5-40")["Body"].read() == \
        plain[5:41]
    on_disk = stored_files(server)
    assert on_disk.count(plain[:24]) == 1  # the source, and not the copy
    # over its own key (encrypting it in place), and by the aws CLI with new metadata
    s3.copy_object(Bucket=bucket, Key="plain", ServerSideEncryption="AES256",
                   CopySource={"Bucket": bucket, "Key": "plain"})
    assert s3.head_object(Bucket=bucket, Key="plain")["ServerSideEncryption"] == "AES256"
    deadline = time.monotonic() + 30  # the replaced plain blob is removed after the answer
    while plain[:24] in stored_files(server):
        assert time.monotonic() < deadline, "the replaced plaintext stays on disk"
        time.sleep(0.05)
    aws = aws_cli(server, tmp_path, check=True)
    s3.put_object(Bucket=bucket, Key="plain2", Body=plain)
    aws("s3api", "copy-object", "--bucket", bucket, "--key", "sealed2", "--copy-source",
        f"{bucket}/plain2", "--server-side-encryption", "AES256", "--metadata-directive",
        "REPLACE", "--content-type", "text/x-sealed")
    head = s3.head_object(Bucket=bucket, Key="sealed2")
    assert (head["ServerSideEncryption"], head["ContentType"]) == ("AES256", "text/x-sealed")
    assert s3.get_object(Bucket=bucket, Key="sealed2")["Body"].read() == plain


def test_multipart_with_encryption_is_refused_at_create_and_at_each_part(s3, bucket):
    for sse in (SSE_C, KMS, {"ServerSideEncryption": "AES256"}):
        refused(lambda sse=sse: s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse))
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    refused(lambda: s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1,
                                   Body=b"part", **SSE_C))
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


def test_reads_with_a_customer_key_of_a_plain_object_are_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"stored as sent")
    refused(lambda: s3.get_object(Bucket=bucket, Key="plain", **SSE_C), "InvalidRequest", 400)
    refused(lambda: s3.head_object(Bucket=bucket, Key="plain", **SSE_C), "InvalidRequest", 400)


def stored_files(server) -> bytes:
    """Every byte under the node's object directory (blob files)."""
    return b"".join(p.read_bytes() for p in (server.data_dir / "objects").rglob("*")
                    if p.is_file())


def test_sse_s3_encrypts_at_rest(server, s3, bucket):
    plain = b"SSE-S3 plaintext marker " + os.urandom(100_000)
    put = s3.put_object(Bucket=bucket, Key="s3", Body=plain, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert plain[:24] not in stored_files(server)  # ciphertext on disk
    got = s3.get_object(Bucket=bucket, Key="s3")  # no key needed: the node's
    assert got["Body"].read() == plain and got["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="s3")["ServerSideEncryption"] == "AES256"
    for start, end in ((0, 0), (5, 40), (17, 99_999), (100_000, 100_023)):
        part = s3.get_object(Bucket=bucket, Key="s3", Range=f"bytes={start}-{end}")
        assert part["Body"].read() == plain[start:end + 1], (start, end)
    # a copy keeps its source's encryption
    copy = s3.copy_object(Bucket=bucket, Key="s3-copy", CopySource={"Bucket": bucket,
                                                                    "Key": "s3"})
    assert copy["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="s3-copy")["Body"].read() == plain
    refused(lambda: s3.upload_part_copy(
        Bucket=bucket, Key="mp", PartNumber=1, CopySource={"Bucket": bucket, "Key": "s3"},
        UploadId=s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]))


def test_sse_c_needs_the_key_and_never_stores_it(server, s3, bucket):
    plain = b"SSE-C plaintext marker " + os.urandom(50_000)
    put = s3.put_object(Bucket=bucket, Key="c", Body=plain, **SSE_C)
    assert put["SSECustomerAlgorithm"] == "AES256" and put["SSECustomerKeyMD5"]
    on_disk = stored_files(server)
    assert plain[:23] not in on_disk and CUSTOMER_KEY not in on_disk
    assert CUSTOMER_KEY not in (server.data_dir / "dayfly.db").read_bytes()
    got = s3.get_object(Bucket=bucket, Key="c", **SSE_C)
    assert got["Body"].read() == plain and got["SSECustomerKeyMD5"] == put["SSECustomerKeyMD5"]
    part = s3.get_object(Bucket=bucket, Key="c", Range="bytes=30-60", **SSE_C)
    assert part["Body"].read() == plain[30:61]
    assert s3.head_object(Bucket=bucket, Key="c", **SSE_C)["ContentLength"] == len(plain)
    refused(lambda: s3.get_object(Bucket=bucket, Key="c"), "InvalidRequest", 400)
    refused(lambda: s3.head_object(Bucket=bucket, Key="c"), "InvalidRequest", 400)
    other = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    refused(lambda: s3.get_object(Bucket=bucket, Key="c", **other), "AccessDenied", 403)
    # its ETag is not the MD5 of the content (which only the key's holder may learn)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="c")["Contents"][0]["ETag"]
    assert listed.strip('"') != hashlib.md5(plain).hexdigest()
    # copies of SSE-C objects need the source's key, which is not implemented
    refused(lambda: s3.copy_object(Bucket=bucket, Key="c2", CopySource={"Bucket": bucket,
                                                                        "Key": "c"}),
            "InvalidRequest", 400)


def test_presigned_urls_asking_for_encryption_are_refused(server, s3, bucket):
    # boto3 signs the encryption headers into the URL; the caller must send them
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre",
                                                          **KMS})
    r = httpx.put(url, content=b"plain", headers={
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": KMS["SSEKMSKeyId"]})
    assert r.status_code == 501 and xml_error(r)["Code"] == "NotImplemented", r.text
    # other clients put them in the signed query string itself, in any case
    key_id, secret = credentials(server.data_dir)
    request = AWSRequest("PUT", f"{server.url}/{bucket}/pre?"
                         "x-amz-server-side-encryption-customer-algorithm=AES256")
    S3SigV4QueryAuth(Credentials(key_id, secret), "s3", REGION, 300).add_auth(request)
    r = httpx.put(request.url, content=b"plain")  # SSE-C without its key
    assert r.status_code == 400 and xml_error(r)["Code"] == "InvalidRequest", r.text
    absent(s3, bucket, "pre")
    # SSE-S3 named in the query is done, as in S3
    request = AWSRequest("PUT", f"{server.url}/{bucket}/pre?X-Amz-Server-Side-Encryption=AES256")
    S3SigV4QueryAuth(Credentials(key_id, secret), "s3", REGION, 300).add_auth(request)
    r = httpx.put(request.url, content=b"plain")
    assert r.status_code == 200 and r.headers["x-amz-server-side-encryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="pre")["ServerSideEncryption"] == "AES256"


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    return aws_cli(server, tmp_path_factory.mktemp("awscfg"), check=False)


def test_aws_cli_sse_options(aws, s3, bucket, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("encrypted by dayfly\n")
    key = CUSTOMER_KEY.hex()[:32]  # the CLI takes the key's 32 bytes as text
    out = aws("s3", "cp", str(src), f"s3://{bucket}/kms.txt", "--sse", "aws:kms",
              "--sse-kms-key-id", "alias/x")
    assert out.returncode != 0 and "NotImplemented" in out.stderr, out.stderr
    absent(s3, bucket, "kms.txt")
    assert aws("s3", "cp", str(src), f"s3://{bucket}/s3.txt", "--sse", "AES256").returncode == 0
    assert s3.head_object(Bucket=bucket, Key="s3.txt")["ServerSideEncryption"] == "AES256"
    out = aws("s3", "cp", str(src), f"s3://{bucket}/c.txt", "--sse-c", "AES256",
              "--sse-c-key", key)
    assert out.returncode == 0, out.stderr
    out = aws("s3", "cp", f"s3://{bucket}/c.txt", str(tmp_path / "back.txt"),
              "--sse-c", "AES256", "--sse-c-key", key)
    assert out.returncode == 0 and (tmp_path / "back.txt").read_text() == src.read_text()
    out = aws("s3", "cp", f"s3://{bucket}/c.txt", str(tmp_path / "nokey.txt"))
    assert out.returncode != 0 and not (tmp_path / "nokey.txt").exists(), out.stderr
