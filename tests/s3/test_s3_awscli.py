"""The aws CLI against the S3 endpoint, and `dayfly keys` managing the keys it signs with."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError
from s3_helpers import aws_cli, error_code, s3_client


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    return aws_cli(server, tmp_path_factory.mktemp("awscfg"), check=True)


def test_aws_cli_cp_ls_head(aws, server, tmp_path):
    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_text("hello from the aws cli\n")
    big.write_bytes(os.urandom(12 * 1024 * 1024))  # over the CLI's 8 MiB multipart threshold
    aws("s3", "mb", "s3://cli-bucket")
    aws("s3", "cp", str(small), "s3://cli-bucket/docs/small.txt")
    aws("s3", "cp", str(big), "s3://cli-bucket/big.bin")
    listing = aws("s3", "ls", "s3://cli-bucket/").stdout
    assert "PRE docs/" in listing and "big.bin" in listing
    assert "small.txt" in aws("s3", "ls", "s3://cli-bucket/docs/").stdout
    assert "cli-bucket" in aws("s3", "ls").stdout
    head = json.loads(aws("s3api", "head-object", "--bucket", "cli-bucket", "--key",
                          "docs/small.txt").stdout)
    assert head["ContentLength"] == small.stat().st_size
    assert head["ETag"] == f'"{hashlib.md5(small.read_bytes()).hexdigest()}"'
    assert json.loads(aws("s3api", "head-object", "--bucket", "cli-bucket", "--key",
                          "big.bin").stdout)["ETag"].endswith('-2"')
    aws("s3", "cp", "s3://cli-bucket/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    aws("s3", "rm", "s3://cli-bucket/big.bin")
    missing = aws("s3api", "head-object", "--bucket", "cli-bucket", "--key", "big.bin",
                  check=False)
    assert missing.returncode != 0 and "404" in missing.stderr


def dayfly(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dayfly.cli.main", *args, "--endpoint",
                           server.url], capture_output=True, text=True, timeout=60)


def test_dayfly_keys_create_ls_rm(server):
    p = dayfly(server, "keys", "create", "--description", "ci key", "--json")
    assert p.returncode == 0, p.stderr
    key = json.loads(p.stdout)
    s3 = s3_client(server, key["id"], key["secret"])
    assert "Buckets" in s3.list_buckets()
    listed = dayfly(server, "keys", "ls")
    assert key["id"] in listed.stdout and "ci key" in listed.stdout
    assert key["secret"] not in listed.stdout
    assert key["secret"] not in dayfly(server, "keys", "ls", "--json").stdout
    assert dayfly(server, "keys", "rm", "-y", key["id"]).returncode == 0
    with pytest.raises(ClientError) as exc:
        s3.list_buckets()
    assert error_code(exc.value) == "InvalidAccessKeyId"
    gone = dayfly(server, "keys", "rm", "-y", key["id"])
    assert gone.returncode == 1 and "No access key" in gone.stderr


def _clean_aws_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_EC2_METADATA_DISABLED": "true", **extra}


def test_keys_create_env_works_for_boto3_and_the_aws_cli(server, tmp_path):
    p = dayfly(server, "keys", "create", "--env")
    assert p.returncode == 0, p.stderr
    # what `eval "$(dayfly keys create --env)"` does, then tools with no other configuration
    script = f"{p.stdout}\n" + (
        f"{sys.executable} -c \"import boto3; s3 = boto3.client('s3'); "
        "s3.create_bucket(Bucket='from-env'); print(len(s3.list_buckets()['Buckets']))\"\n"
        f"{shutil.which('aws') or 'aws'} s3 ls\n")
    home = tmp_path / "home"
    home.mkdir()
    out = subprocess.run(["bash", "-ec", script], capture_output=True, text=True, timeout=120,
                         env=_clean_aws_env(HOME=str(home)))
    assert out.returncode == 0, out.stderr
    assert "from-env" in out.stdout


def test_keys_create_profile_works_for_boto3_and_the_aws_cli(server, tmp_path):
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[other]\naws_access_key_id = keep\n"
                                               "aws_secret_access_key = me\n")
    env = _clean_aws_env(HOME=str(home))
    p = subprocess.run([sys.executable, "-m", "dayfly.cli.main", "keys", "create", "--profile",
                        "dayfly", "--endpoint", server.url], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    creds = home / ".aws" / "credentials"
    assert creds.stat().st_mode & 0o077 == 0
    assert "[other]" in creds.read_text() and "keep" in creds.read_text()  # others untouched
    made = subprocess.run([shutil.which("aws") or "aws", "--profile", "dayfly", "s3", "mb",
                           "s3://from-profile"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert made.returncode == 0, made.stderr
    listed = subprocess.run(
        [sys.executable, "-c", "import boto3; print([b['Name'] for b in boto3.Session("
         "profile_name='dayfly').client('s3').list_buckets()['Buckets']])"],
        capture_output=True, text=True, timeout=60, env=env)
    assert listed.returncode == 0 and "from-profile" in listed.stdout, listed.stderr
