"""Functions reach their buckets with an unmodified boto3 whatever address the node listens
on: IPv4 or IPv6 loopback, or every address of either family (tokens required there), as root
and rootless, in the linux tier (through the egress relay, which still reaches nothing of the
node but its S3 endpoint) and in the process tier."""

from __future__ import annotations

import configparser
import contextlib
import ipaddress
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from conftest import ALLOW_WEAK, make_zip, start_server, stop_server

UNPRIVILEGED = ("unshare", "--mount", "--propagation", "private", sys.executable,
                str(Path(__file__).resolve().parent.parent / "security" / "unprivileged.py"))
NOBODY = 65534
PROBE = """
import os, urllib.request
import boto3

def handler(event, context):
    s3 = boto3.client("s3")
    key = os.environ["AWS_LAMBDA_FUNCTION_NAME"] + ".txt"
    out = {"endpoint": os.environ["AWS_ENDPOINT_URL"]}
    try:
        s3.put_object(Bucket="box", Key=key, Body=b"hello from " + key.encode())
        out["got"] = s3.get_object(Bucket="box", Key=key)["Body"].read().decode()
    except Exception as exc:
        out["got"] = repr(exc)
    # the node's other APIs, at the same address, even claiming to be forwarded for another
    api = urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/2015-03-31/functions/",
                                 headers={"X-Forwarded-For": "192.0.2.7"})
    try:
        urllib.request.urlopen(api, timeout=10)
        out["lambda_api"] = "reachable"
    except Exception as exc:
        out["lambda_api"] = str(exc)
    return out
"""
# (--host, as nobody): every address family a node can be bound to, and IPv6 rootless
NODES = [("::1", False), ("127.0.0.1", False), ("0.0.0.0", False), ("::", False),
         ("::1", True)]


@pytest.fixture(scope="module", params=NODES, ids=lambda p: p[0] + (" rootless" if p[1] else ""))
def node(request, tmp_path_factory):
    host, rootless = request.param
    if rootless and (os.geteuid() != 0 or shutil.which("unshare") is None):
        pytest.skip("needs root (and util-linux) to run the node as nobody")
    home = Path(tempfile.mkdtemp(prefix="dayfly-hosts-")) if rootless else \
        tmp_path_factory.mktemp("hosts")
    if rootless:
        os.chown(home, NOBODY, NOBODY)
    srv = start_server(home / "data", *ALLOW_WEAK, host=host,  # the process tier is tried too
                       prefix=UNPRIVILEGED if rootless else ())
    try:
        yield srv
    finally:
        stop_server(srv)
        if rootless:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def headers(node) -> dict[str, str]:
    token = node.data_dir / "token"  # written when bound beyond loopback
    return {"authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}


@pytest.fixture(scope="module")
def bucket(node) -> str:
    cp = configparser.ConfigParser()
    cp.read(node.data_dir / "credentials")
    s3 = boto3.client("s3", endpoint_url=node.url, region_name="us-east-1",
                      aws_access_key_id=cp["default"]["aws_access_key_id"],
                      aws_secret_access_key=cp["default"]["aws_secret_access_key"],
                      config=Config(s3={"addressing_style": "path"},
                                    retries={"max_attempts": 1}))
    s3.create_bucket(Bucket="box")
    return "box"


def _deploy_and_invoke(node, headers, name: str, tier: str) -> dict:
    toml = f'isolation = "{tier}"\nbuckets = ["box:read", "box:write"]\ntimeout = 30\n'
    files = {"handler.py": PROBE, "requirements.txt": "boto3\n", "dayfly.toml": toml}
    with httpx.stream("POST", f"{node.url}/dayfly/v1/functions/{name}/deploy",
                      headers={**headers, "content-type": "application/zip"}, content=make_zip(files),
                      timeout=300) as r:
        lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
    assert lines[-1]["function"]["Dayfly"]["Isolation"] == tier, lines[-5:]
    r = httpx.post(f"{node.url}/2015-03-31/functions/{name}/invocations", headers=headers,
                   content=b"{}", timeout=120)
    assert r.status_code == 200 and "x-amz-function-error" not in r.headers, r.text
    return r.json()


def test_linux_tier_reaches_its_bucket_and_only_the_s3_endpoint(node, headers, bucket):
    out = _deploy_and_invoke(node, headers, "probe-linux", "linux")
    assert out["got"] == "hello from probe-linux.txt", (out, node.log()[-2000:])
    assert "403" in out["lambda_api"], out  # through the relay: S3 only


def test_process_tier_reaches_its_bucket(node, headers, bucket):
    out = _deploy_and_invoke(node, headers, "probe-process", "process")
    assert out["got"] == "hello from probe-process.txt", (out, node.log()[-2000:])


def _listening(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses a process listens on (its socket inodes in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    out = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/net/{table}") as f:
            for row in list(f)[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    raw, port = cols[1].split(":")
                    packed = b"".join(bytes.fromhex(raw[i:i + 8])[::-1]
                                      for i in range(0, len(raw), 8))
                    out.add((socket.inet_ntop(family, packed), int(port, 16)))
    return out


def test_the_functions_listener_serves_only_s3(node, headers, bucket):
    """Functions' relays reach the node on a loopback listener of their own, where nothing
    but requests signed for S3 is served, whatever the headers say."""
    ((host, port),) = {a for a in _listening(node.proc.pid) if a[1] != node.port}
    assert ipaddress.ip_address(host).is_loopback and port != node.port
    side = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    for path in ("/2015-03-31/functions/", "/dayfly/v1/functions", "/metrics"):
        r = httpx.get(side + path, headers={**headers, "X-Forwarded-For": "192.0.2.7"})
        assert r.status_code == 403 and "only the S3 endpoint" in r.text, (path, r.text)
    r = httpx.post(side + "/2015-03-31/functions/probe-linux/invocations", content=b"{}",
                   headers=headers)
    assert r.status_code == 403
    assert httpx.get(node.url + "/2015-03-31/functions/", headers=headers).status_code == 200
    cp = configparser.ConfigParser()
    cp.read(node.data_dir / "credentials")
    s3 = boto3.client("s3", endpoint_url=side, region_name="us-east-1",
                      aws_access_key_id=cp["default"]["aws_access_key_id"],
                      aws_secret_access_key=cp["default"]["aws_secret_access_key"],
                      config=Config(s3={"addressing_style": "path"}))
    assert "box" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_the_announced_url_is_one(node):
    announced = re.search(r"listening on (\S+)", node.log()).group(1)
    assert httpx.URL(announced).port == node.port, announced  # IPv6 in brackets
