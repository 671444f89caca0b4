"""Server-side encryption is refused with S3's errors, never answered as done: SSE-C, SSE-KMS
and SSE-S3 from boto3, the aws CLI and presigned URLs, on every operation that takes them.
Each refused write must also have stored nothing."""

from __future__ import annotations

import os

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


@pytest.mark.parametrize("sse", [SSE_C, KMS, {"ServerSideEncryption": "aws:kms:dsse"},
                                 {"ServerSideEncryption": "AES256"}],
                         ids=["sse-c", "sse-kms", "dsse-kms", "sse-s3"])
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
    for sse in (SSE_C, COPY_SSE_C, KMS, {"ServerSideEncryption": "AES256"}):
        refused(lambda sse=sse: s3.copy_object(Bucket=bucket, Key="dst", CopySource=source,
                                               **sse))
    absent(s3, bucket, "dst")


def test_multipart_with_encryption_is_refused_at_create_and_at_each_part(s3, bucket):
    for sse in (SSE_C, KMS, {"ServerSideEncryption": "AES256"}):
        refused(lambda sse=sse: s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse))
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    refused(lambda: s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1,
                                   Body=b"part", **SSE_C))
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


def test_reads_with_a_customer_key_are_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"stored as sent")
    refused(lambda: s3.get_object(Bucket=bucket, Key="plain", **SSE_C))
    refused(lambda: s3.head_object(Bucket=bucket, Key="plain", **SSE_C))


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
    for name, value in (("X-Amz-Server-Side-Encryption", "AES256"),
                        ("x-amz-server-side-encryption-customer-algorithm", "AES256")):
        request = AWSRequest("PUT", f"{server.url}/{bucket}/pre?{name}={value}")
        S3SigV4QueryAuth(Credentials(key_id, secret), "s3", REGION, 300).add_auth(request)
        r = httpx.put(request.url, content=b"plain")
        assert r.status_code == 501 and xml_error(r)["Code"] == "NotImplemented", (name, r.text)
    absent(s3, bucket, "pre")


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    return aws_cli(server, tmp_path_factory.mktemp("awscfg"), check=False)


def test_aws_cli_sse_options_fail_and_store_nothing(aws, s3, bucket, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("not encrypted by dayfly\n")
    key = CUSTOMER_KEY.hex()[:32]  # the CLI takes the key's 32 bytes as text
    for options in (["--sse", "AES256"], ["--sse", "aws:kms", "--sse-kms-key-id", "alias/x"],
                    ["--sse-c", "AES256", "--sse-c-key", key]):
        out = aws("s3", "cp", str(src), f"s3://{bucket}/f.txt", *options)
        assert out.returncode != 0, (options, out.stdout)
        assert "NotImplemented" in out.stderr, (options, out.stderr)
    absent(s3, bucket, "f.txt")
    assert aws("s3", "cp", str(src), f"s3://{bucket}/f.txt").returncode == 0
    out = aws("s3", "cp", f"s3://{bucket}/f.txt", str(tmp_path / "back.txt"),
              "--sse-c", "AES256", "--sse-c-key", key)
    assert out.returncode != 0 and not (tmp_path / "back.txt").exists(), out.stderr
