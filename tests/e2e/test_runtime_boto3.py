"""The runtime-level boto3 (sandbox/sdk.py): a handler that only `import boto3`, with no
requirements.txt, lists the bucket it declared through dayfly's S3 endpoint; a function that
pins its own botocore gets its pin (the runtime copy comes after its dependencies)."""

from __future__ import annotations

import configparser
import importlib.metadata
import json

import boto3
import httpx
import pytest
from botocore.config import Config
from conftest import ALLOW_WEAK, make_zip, start_server, stop_server
from test_deps import wheel

LIST = """
import sys
import boto3

def handler(event, context):
    s3 = boto3.client("s3")
    found = s3.list_objects_v2(Bucket="{bucket}").get("Contents", [])
    return {{"keys": [o["Key"] for o in found], "version": boto3.__version__,
             "file": boto3.__file__, "path": sys.path}}
"""
PINNED = """
import importlib.util, sys
import botocore

def handler(event, context):
    return {"botocore": botocore.__version__, "path": sys.path,
            "boto3": importlib.util.find_spec("boto3").origin}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("sdk") / "data", *ALLOW_WEAK)
    try:
        yield server
    finally:
        stop_server(server)


def s3_client(server):
    cp = configparser.ConfigParser()
    cp.read(server.data_dir / "credentials")
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=cp["default"]["aws_access_key_id"],
                        aws_secret_access_key=cp["default"]["aws_secret_access_key"],
                        config=Config(s3={"addressing_style": "path"}))


def deploy(server, name: str, files: dict[str, str | bytes]) -> dict:
    """Through the dayfly API (dayfly.toml and requirements.txt honoured)."""
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=make_zip(files), headers={"content-type": "application/zip"},
                      timeout=300) as r:
        lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
    assert "function" in lines[-1], lines[-5:]
    return lines[-1]["function"]


def _invoke(server, name: str) -> dict:
    resp = server.lambda_client().invoke(FunctionName=name, Payload=b"{}")
    body = resp["Payload"].read()
    assert "FunctionError" not in resp, body
    return json.loads(body)


def test_import_boto3_without_requirements_lists_the_declared_bucket(srv):
    s3 = s3_client(srv)
    s3.create_bucket(Bucket="tutorial")
    s3.put_object(Bucket="tutorial", Key="hello.txt", Body=b"hi")
    fn = deploy(srv, "lister", {"handler.py": LIST.format(bucket="tutorial"),
                                "dayfly.toml": 'buckets = ["tutorial:read"]\ntimeout = 30\n'})
    assert fn["Dayfly"]["Isolation"] == "linux" and fn["Dayfly"]["DependenciesKey"] is None
    out = _invoke(srv, "lister")
    assert out["keys"] == ["hello.txt"]
    assert out["version"] == importlib.metadata.version("boto3")  # the pyproject pin
    assert out["file"] == "/var/runtime/boto3/__init__.py"  # Lambda's place, read-only
    assert out["path"][-1] == "/var/runtime"


@pytest.mark.parametrize("tier", ["linux", "gvisor", "process"])
def test_the_function_pin_wins(srv, tier):
    whl_name, whl = wheel("botocore", "0.0.42", "__version__ = '0.0.42'\n")
    name = f"pinned-{tier}"
    deploy(srv, name, {"handler.py": PINNED, "requirements.txt": f"./{whl_name}\n",
                       whl_name: whl, "dayfly.toml": f'isolation = "{tier}"\ntimeout = 30\n'})
    out = _invoke(srv, name)
    assert out["botocore"] == "0.0.42"  # its own, not the runtime's
    assert out["boto3"].endswith("/boto3/__init__.py")  # boto3 itself: the runtime's
    deps = [i for i, p in enumerate(out["path"]) if p == "/var/deps" or "/deps/" in p]
    sdk = [i for i, p in enumerate(out["path"]) if p == "/var/runtime" or "/sdk/boto3-" in p]
    assert deps and sdk and deps[0] < sdk[0], out["path"]
