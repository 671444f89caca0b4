"""Cross-site requests and DNS rebinding against a loopback node without tokens (issue 12,
point 2): a foreign Host or Origin, or a management POST any page could send, gets a 403 and
changes nothing; the node's own clients (boto3, the dayfly CLI, S3 with presigned URLs) keep
working, and --allow-host / --allow-origin widen what is accepted."""

from __future__ import annotations

import base64
import configparser

import boto3
import httpx
import pytest
from botocore.config import Config
from click.testing import CliRunner
from conftest import make_zip, start_server, stop_server
from obs_helpers import deploy, runs

from dayfly.cli.main import cli

EVIL = "http://evil.example"
CODE = make_zip({"handler.py": "def handler(event, context):\n    return {'ran': True}\n"})
CREATE = {"FunctionName": "planted", "Runtime": "python3.12", "Handler": "handler.handler",
          "Role": "arn:aws:iam::000000000000:role/x",
          "Code": {"ZipFile": base64.b64encode(CODE).decode()}}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("xsite") / "data")
    try:
        deploy(srv.url, "fn")
        yield srv
    finally:
        stop_server(srv)


def exists(node, name: str) -> bool:
    r = httpx.get(f"{node.url}/2015-03-31/functions/{name}")
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


def refused(r: httpx.Response, words: str) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert words in r.json()["message"] and r.json()["hint"]


def test_the_reported_request_is_refused_and_deploys_nothing(node):
    r = httpx.post(f"{node.url}/2015-03-31/functions", content=httpx.Request(
        "POST", "http://x", json=CREATE).content, headers={
        "content-type": "text/plain", "origin": EVIL, "host": "evil.example"})
    refused(r, "DNS rebinding")
    assert not exists(node, "planted")


@pytest.mark.parametrize(("headers", "words"), [
    ({"host": "evil.example", "content-type": "application/json"}, "DNS rebinding"),
    ({"host": "evil.example:1234", "content-type": "application/json"}, "DNS rebinding"),
    ({"origin": EVIL, "content-type": "application/json"}, "cross-site"),
    ({"origin": "null", "content-type": "application/json"}, "cross-site"),
    ({"content-type": "text/plain"}, "content type"),
    ({"content-type": "application/x-www-form-urlencoded"}, "content type"),
    ({"content-type": "multipart/form-data; boundary=b"}, "content type"),
    ({}, "content type"),
], ids=["host", "host-port", "origin", "origin-null", "text", "form", "multipart", "no-type"])
def test_each_cross_site_trait_alone_is_refused(node, headers, words):
    body = httpx.Request("POST", "http://x", json=CREATE).content
    r = httpx.post(f"{node.url}/2015-03-31/functions", content=body, headers=headers)
    refused(r, words)
    assert not exists(node, "planted")


def test_the_same_deploy_from_the_node_itself_works(node):
    own = {"content-type": "application/json", "origin": node.url}
    r = httpx.post(f"{node.url}/2015-03-31/functions", json=CREATE, headers=own)
    assert r.status_code == 201, r.text
    assert httpx.delete(f"{node.url}/2015-03-31/functions/planted").status_code == 204


@pytest.mark.parametrize("headers", [
    {"origin": EVIL, "content-type": "text/plain"},
    {"origin": EVIL, "x-amz-invocation-type": "Event"},
    {"host": "evil.example"},
], ids=["sync", "event", "rebinding"])
def test_invokes_from_another_site_do_not_run(node, headers):
    before = runs(node.url, "fn")
    r = httpx.post(f"{node.url}/2015-03-31/functions/fn/invocations", content=b"{}",
                   headers=headers)
    assert r.status_code == 403, r.text
    assert runs(node.url, "fn") == before


def test_curl_style_invokes_keep_working(node):
    # curl -d sends application/x-www-form-urlencoded; invokes are not management calls
    r = httpx.post(f"{node.url}/2015-03-31/functions/fn/invocations", content=b'{"a": 1}',
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/dayfly/v1/secrets", "/dayfly/v1/keys", "/metrics", "/ui/",
                                  "/healthz", "/dayfly/v1/functions/fn/logs"])
def test_dns_rebinding_reads_nothing(node, path):
    r = httpx.get(node.url + path, headers={"host": f"evil.example:{node.port}"})
    refused(r, "DNS rebinding")


def s3_client(node, endpoint: str):
    cfg = configparser.ConfigParser()
    cfg.read(node.data_dir / "credentials")
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=cfg["default"]["aws_access_key_id"],
                        aws_secret_access_key=cfg["default"]["aws_secret_access_key"],
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def test_s3_is_authenticated_by_its_signature_whatever_the_host_or_origin(node):
    s3 = s3_client(node, node.url)
    s3.create_bucket(Bucket="shared")
    s3.put_object(Bucket="shared", Key="a.txt", Body=b"presigned bytes")
    # a presigned URL made for another name the node is reached by (a proxy, a container
    # name), used from a page of another origin: SigV4 covers the Host it was made for
    named = s3_client(node, f"http://files.internal:{node.port}")
    url = named.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "a.txt"})
    local = url.replace(f"files.internal:{node.port}", f"127.0.0.1:{node.port}")
    r = httpx.get(local, headers={"host": f"files.internal:{node.port}", "origin": EVIL})
    assert r.status_code == 200 and r.content == b"presigned bytes", r.text
    put = named.generate_presigned_url("put_object", Params={"Bucket": "shared", "Key": "b.txt"})
    r = httpx.put(put.replace(f"files.internal:{node.port}", f"127.0.0.1:{node.port}"),
                  content=b"from a page", headers={"host": f"files.internal:{node.port}",
                                                    "origin": "http://app.example"})
    assert r.status_code == 200, r.text
    assert s3.get_object(Bucket="shared", Key="b.txt")["Body"].read() == b"from a page"
    # a rebinding page cannot reuse a URL made for the node's own name under its own
    mine = s3.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "a.txt"})
    r = httpx.get(mine, headers={"host": f"evil.example:{node.port}", "origin": EVIL})
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content


def test_boto3_and_the_dayfly_cli_keep_working(node, tmp_path):
    lam = boto3.client("lambda", endpoint_url=node.url, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x",
                       config=Config(retries={"max_attempts": 1}))
    lam.create_function(FunctionName="via-boto3", Runtime="python3.12", Role="r",
                        Handler="handler.handler", Code={"ZipFile": CODE})
    assert lam.invoke(FunctionName="via-boto3", Payload=b"{}")["StatusCode"] == 200
    lam.publish_version(FunctionName="via-boto3")
    lam.delete_function(FunctionName="via-boto3")
    folder = tmp_path / "via-cli"
    folder.mkdir()
    (folder / "handler.py").write_text("def handler(event, context):\n    return event\n")
    env = {"DAYFLY_ENDPOINT": node.url, "DAYFLY_TOKEN": "", "DAYFLY_DATA_DIR": "/nonexistent"}
    for args in (["deploy", str(folder), "--publish"], ["invoke", "via-cli", "-p", '{"k": 1}'],
                 ["secrets", "set", "k", "v"], ["keys", "create", "-d", "x"], ["ls"]):
        res = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
        assert res.exit_code == 0, (args, res.output)


def test_allowed_hosts_and_origins(tmp_path):
    srv = start_server(tmp_path / "data", "--allow-host", "dayfly.test", "--allow-origin",
                       "https://dayfly.test")
    try:
        url = f"{srv.url}/2015-03-31/functions"
        ok = {"host": f"dayfly.test:{srv.port}", "origin": "https://dayfly.test",
              "content-type": "application/json"}
        assert httpx.get(url, headers=ok).status_code == 200
        refused(httpx.get(url, headers={**ok, "host": "other.test"}), "DNS rebinding")
        refused(httpx.get(url, headers={**ok, "origin": "https://other.test"}), "cross-site")
        assert "refused GET /2015-03-31/functions" in srv.log()  # the operator can see why
    finally:
        stop_server(srv)
