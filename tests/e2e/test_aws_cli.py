"""The real `aws` CLI (awscli) against a real `dayfly up`: create, invoke, list, get, delete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import make_zip
from e2e_helpers import ROLE, unique_name

SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts

RAW = "raw-in-base64-out"

HANDLER = {"handler.py": """
    import os

    def handler(event, context):
        return {"hello": event.get("name", "world"), "fn": context.function_name,
                "greeting": os.environ.get("GREETING")}
"""}


def cli_major(exe: str) -> int:
    """1 for awscli from PyPI, 2 for the v2 installer (the flags below differ between them)."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    return int((out.stdout or out.stderr).split("/", 1)[1].split(".", 1)[0])


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    """Run `aws lambda ...` against the server; returns the completed process."""
    exe = shutil.which("aws")
    if exe is None:
        pytest.skip("the aws CLI is not installed (pip install awscli)")
    major = cli_major(exe)
    home = tmp_path_factory.mktemp("aws-home")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(home / "config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"), "AWS_PAGER": "",
           "HOME": str(home)}
    env.pop("AWS_PROFILE", None)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        if major < 2:  # v1 sends --payload as is and has no --cli-binary-format
            args = tuple(a for a in args if a not in ("--cli-binary-format", RAW))
        proc = subprocess.run([exe, "lambda", *args, "--endpoint-url", server.url,
                               "--output", "json"], env=env, capture_output=True, text=True,
                              timeout=60)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    run.service_error_code = 255 if major < 2 else 254  # type: ignore[attr-defined]
    return run


def test_aws_cli_function_lifecycle(aws, server, tmp_path: Path):
    name = unique_name("cli")
    zip_path = tmp_path / "fn.zip"
    zip_path.write_bytes(make_zip(HANDLER))

    created = json.loads(aws(
        "create-function", "--function-name", name, "--runtime", "python3.11",
        "--role", ROLE, "--handler", "handler.handler", "--zip-file", f"fileb://{zip_path}",
        "--memory-size", "256", "--timeout", "5",
        "--environment", "Variables={GREETING=hi}").stdout)
    assert created["FunctionName"] == name
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert created["MemorySize"] == 256
    assert created["Timeout"] == 5
    assert created["State"] == "Active"
    assert created["Environment"] == {"Variables": {"GREETING": "hi"}}

    out_file = tmp_path / "out.json"
    invoked = json.loads(aws(
        "invoke", "--function-name", name, "--cli-binary-format", RAW,
        "--payload", '{"name": "cli"}', "--log-type", "Tail", str(out_file)).stdout)
    assert invoked["StatusCode"] == 200
    assert invoked["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in invoked
    assert json.loads(out_file.read_text()) == {"hello": "cli", "fn": name, "greeting": "hi"}

    listed = json.loads(aws("list-functions").stdout)
    mine = [f for f in listed["Functions"] if f["FunctionName"] == name]
    assert len(mine) == 1
    assert mine[0]["CodeSha256"] == created["CodeSha256"]

    got = json.loads(aws("get-function", "--function-name", name).stdout)
    assert got["Configuration"]["FunctionArn"] == created["FunctionArn"]
    assert got["Configuration"]["Handler"] == "handler.handler"
    assert httpx.get(got["Code"]["Location"], timeout=10).content == zip_path.read_bytes()

    deleted = aws("delete-function", "--function-name", name)
    # newer botocore models surface the 204 as output; older ones print nothing
    assert json.loads(deleted.stdout or '{"StatusCode": 204}') == {"StatusCode": 204}

    missing = aws("get-function", "--function-name", name, check=False)
    assert missing.returncode == aws.service_error_code
    assert "ResourceNotFoundException" in missing.stderr


def test_aws_cli_invoke_function_error(aws, tmp_path: Path):
    name = unique_name("clierr")
    zip_path = tmp_path / "fn.zip"
    zip_path.write_bytes(make_zip({"handler.py": """
        def handler(event, context):
            raise RuntimeError("cli saw this")
    """}))
    aws("create-function", "--function-name", name, "--runtime", "python3.11", "--role", ROLE,
        "--handler", "handler.handler", "--zip-file", f"fileb://{zip_path}")
    out_file = tmp_path / "out.json"
    invoked = json.loads(aws("invoke", "--function-name", name, "--cli-binary-format",
                             RAW, "--payload", "{}", str(out_file)).stdout)
    assert invoked["StatusCode"] == 200
    assert invoked["FunctionError"] == "Unhandled"
    err = json.loads(out_file.read_text())
    assert (err["errorType"], err["errorMessage"]) == ("RuntimeError", "cli saw this")


def test_aws_cli_rejected_zip_is_a_service_error(aws, tmp_path: Path):
    # the CLI itself refuses files that are not zips, so send a zip the server must refuse
    zip_path = tmp_path / "slip.zip"
    zip_path.write_bytes(make_zip({**HANDLER, "../evil.py": "x = 1\n"}))
    name = unique_name("clibad")
    proc = aws("create-function", "--function-name", name, "--runtime", "python3.11",
               "--role", ROLE, "--handler", "handler.handler", "--zip-file",
               f"fileb://{zip_path}", check=False)
    assert proc.returncode == aws.service_error_code
    assert "InvalidParameterValueException" in proc.stderr
    assert "points outside the bundle" in proc.stderr
    missing = aws("get-function", "--function-name", name, check=False)
    assert (missing.returncode, "ResourceNotFoundException" in missing.stderr) == (
        aws.service_error_code, True)
