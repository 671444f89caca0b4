"""API tokens: open on loopback until a token exists; required when bound elsewhere, except for
/healthz, the dashboard's files, S3 (SigV4 keys), and public functions."""

from __future__ import annotations

import configparser
import json
import os
import stat

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from click.testing import CliRunner
from conftest import start_server, stop_server
from obs_helpers import deploy, invoke

from dayfly.cli.main import cli

PUBLIC = {"handler.py": "def handler(event, context):\n    return {'public': True}\n",
          "dayfly.toml": 'handler = "handler.handler"\npublic = true\n'}


@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    """A server bound to every address: tokens required from the start."""
    srv = start_server(tmp_path_factory.mktemp("exposed") / "data", "--host", "0.0.0.0")
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def token(exposed) -> str:
    path = exposed.data_dir / "token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    return path.read_text().strip()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def lam(url: str, key: str):
    return boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key="unused",
                        config=Config(retries={"max_attempts": 1}))


@pytest.mark.parametrize("path", ["/2015-03-31/functions/", "/dayfly/v1/stats", "/metrics",
                                  "/dayfly/v1/tokens", "/dayfly/v1/buckets"])
def test_management_needs_a_token(exposed, token, path):
    r = httpx.get(exposed.url + path)
    assert r.status_code == 401
    assert r.headers["x-amzn-errortype"] == "UnauthorizedException"
    assert "dayfly token create" in r.json()["hint"]
    assert httpx.get(exposed.url + path, headers=bearer("dfy_wrong_token")).status_code == 401
    assert httpx.get(exposed.url + path, headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/ui/", "/ui/app.js"])
def test_health_spec_and_dashboard_files_are_open(exposed, path):
    assert httpx.get(exposed.url + path).status_code == 200


def test_private_functions_need_a_token_public_ones_do_not(exposed, token):
    deploy(exposed.url, "private-fn", headers=bearer(token))
    cfg = deploy(exposed.url, "public-fn", PUBLIC, headers=bearer(token))
    assert cfg["Dayfly"]["Public"] is True
    assert invoke(exposed.url, "private-fn").status_code == 401
    assert invoke(exposed.url, "private-fn", headers=bearer(token)).status_code == 200
    r = invoke(exposed.url, "public-fn")
    assert r.status_code == 200 and r.json() == {"public": True}
    assert invoke(exposed.url, "no-such-fn").status_code == 401  # existence is not revealed
    # made private through the API: the token is needed again
    r = httpx.put(f"{exposed.url}/2015-03-31/functions/public-fn/configuration",
                  json={"Dayfly": {"Public": False}}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["Dayfly"]["Public"] is False
    assert invoke(exposed.url, "public-fn").status_code == 401


def test_boto3_uses_the_token_as_its_access_key_id(exposed, token):
    deploy(exposed.url, "boto-fn", headers=bearer(token))
    names = [f["FunctionName"] for f in lam(exposed.url, token).list_functions()["Functions"]]
    assert "boto-fn" in names
    out = lam(exposed.url, token).invoke(FunctionName="boto-fn", Payload=b"{}")
    assert out["StatusCode"] == 200
    with pytest.raises(ClientError) as err:
        lam(exposed.url, "not-a-token").list_functions()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401


def test_s3_keeps_its_own_signature_auth(exposed):
    cfg = configparser.ConfigParser()
    cfg.read(exposed.data_dir / "credentials")
    s3 = boto3.client("s3", endpoint_url=exposed.url, region_name="us-east-1",
                      aws_access_key_id=cfg["default"]["aws_access_key_id"],
                      aws_secret_access_key=cfg["default"]["aws_secret_access_key"])
    s3.create_bucket(Bucket="tokenless")
    assert "tokenless" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def run(url: str, *args: str, token: str | None = None):
    env = {"DAYFLY_ENDPOINT": url, "DAYFLY_TOKEN": token or "", "DAYFLY_DATA_DIR": "/nonexistent"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_cli_token_create_ls_revoke(exposed, token):
    res = run(exposed.url, "ls")
    assert res.exit_code == 1 and "requires an API token" in res.output
    assert "hint:" in res.output and "Traceback" not in res.output
    res = run(exposed.url, "token", "create", "-d", "ci", token=token)
    assert res.exit_code == 0, res.output
    new = res.stdout.strip().splitlines()[0]
    assert new.startswith("dfy_")
    listing = run(exposed.url, "token", "ls", "--json", token=new)
    assert listing.exit_code == 0, listing.output
    ids = {t["id"]: t["description"] for t in json.loads(listing.stdout)["tokens"]}
    new_id = new.split("_")[1]
    assert ids[new_id] == "ci" and len(ids) >= 2
    assert run(exposed.url, "token", "revoke", new_id, "--yes", token=token).exit_code == 0
    assert httpx.get(f"{exposed.url}/dayfly/v1/stats", headers=bearer(new)).status_code == 401
    assert httpx.get(f"{exposed.url}/dayfly/v1/stats", headers=bearer(token)).status_code == 200


def test_loopback_is_open_until_a_token_exists(tmp_path):
    srv = start_server(tmp_path / "data")
    try:
        assert not (srv.data_dir / "token").exists()
        deploy(srv.url, "loop-fn")
        assert lam(srv.url, "x").invoke(FunctionName="loop-fn", Payload=b"{}")["StatusCode"] == 200
        made = httpx.post(f"{srv.url}/dayfly/v1/tokens", json={"description": "t"}).json()
        assert invoke(srv.url, "loop-fn").status_code == 401
        assert invoke(srv.url, "loop-fn", headers=bearer(made["token"])).status_code == 200
        r = httpx.delete(f"{srv.url}/dayfly/v1/tokens/{made['id']}", headers=bearer(made["token"]))
        assert r.status_code == 204
        assert invoke(srv.url, "loop-fn").status_code == 200  # no token left: open again
    finally:
        stop_server(srv)
