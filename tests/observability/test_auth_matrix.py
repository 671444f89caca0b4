"""Every route family against every credential form, on a node bound to every address (tokens
required): what may pass is decided once, from the facts the router acts on, so a request goes
either to the S3 endpoint (which verifies its SigV4 signature) or to a part of dayfly that asks
for an API token, never to a function without one (issue 12, point 1)."""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from conftest import start_server, stop_server
from obs_helpers import deploy, runs

REGION = "us-east-1"
BARE_S3_QUERY = "X-Amz-Credential=a%2Fb%2Fus-east-1%2Fs3%2Faws4_request"  # the issue's
JSON = {"content-type": "application/json"}
OBJECT = b"the object's bytes"


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # {fn}: the function the cell may invoke
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    ok: int = 200


INVOKE = "/2015-03-31/functions/{fn}/invocations"
FAMILIES = {
    "lambda-api": Call("GET", "/2015-03-31/functions/"),
    "lambda-invoke-async": Call("POST", "/2014-11-13/functions/{fn}/invoke-async/", b"{}", JSON,
                                202),
    "invoke": Call("POST", INVOKE, b"{}", JSON),
    "invoke-event": Call("POST", INVOKE, b"{}", {**JSON, "x-amz-invocation-type": "Event"}, 202),
    "invoke-dryrun": Call("POST", INVOKE, b"{}", {**JSON, "x-amz-invocation-type": "DryRun"}, 204),
    "invoke-qualifier": Call("POST", INVOKE + "?Qualifier=1", b"{}", JSON),
    "dayfly-api": Call("GET", "/dayfly/v1/tokens"),
    "dayfly-api-function": Call("GET", "/dayfly/v1/functions/{fn}/instances"),
    "metrics": Call("GET", "/metrics"),
    "ui-stats": Call("GET", "/dayfly/v1/stats"),
    "ui-buckets": Call("GET", "/dayfly/v1/buckets"),
    "s3": Call("GET", "/matrix/object.txt"),
    "ingest": Call("POST", "/dayfly/v1/ingest/s3/matrix-src", b'{"Event": "s3:TestEvent"}', JSON),
}
CREDENTIALS = ["none", "token", "token-forged", "sigv4-token", "sigv4-forged", "sigv4-s3",
               "sigv4-s3-forged", "sigv4-s3-token", "presigned-s3", "presigned-s3-forged",
               "query-s3-bare", "presigned-token", "presigned-forged", "ingest-token"]
# what each family answers: ok (its own 2xx), 401 (no valid API token), s3 (the S3 endpoint's
# XML error: the request went there, not to dayfly's APIs), or another status
API = {"none": "401", "token": "ok", "token-forged": "401", "sigv4-token": "ok",
       "sigv4-forged": "401", "sigv4-s3": "s3", "sigv4-s3-forged": "s3", "sigv4-s3-token": "s3",
       "presigned-s3": "s3", "presigned-s3-forged": "s3", "query-s3-bare": "s3",
       "presigned-token": "401", "presigned-forged": "401", "ingest-token": "401"}
EXPECTED = {name: API for name in FAMILIES}
EXPECTED["s3"] = {**API, "token": "404", "sigv4-token": "404", "sigv4-s3": "ok",
                  "presigned-s3": "ok",
                  "none": "s3"}  # unsigned /bucket/key: S3's AccessDenied (issue 17, decision 3)
EXPECTED["ingest"] = {**API, "token": "401", "sigv4-token": "401", "ingest-token": "ok"}


@dataclass
class Node:
    url: str
    token: str
    s3_key: tuple[str, str]
    ingest_token: str


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("matrix") / "data", "--host", "0.0.0.0")
    try:
        token = (srv.data_dir / "token").read_text().strip()
        bearer = {"authorization": f"Bearer {token}"}
        cfg = configparser.ConfigParser()
        cfg.read(srv.data_dir / "credentials")
        key = cfg["default"]["aws_access_key_id"], cfg["default"]["aws_secret_access_key"]
        lam = boto3.client("lambda", endpoint_url=srv.url, region_name=REGION,
                           aws_access_key_id=token, aws_secret_access_key="unused",
                           config=Config(retries={"max_attempts": 1}))
        for fn in ("target", "victim"):  # target: cells that may run it; victim: the others
            deploy(srv.url, fn, headers={**bearer, "content-type": "application/zip"})
            lam.publish_version(FunctionName=fn)
        s3 = boto3.client("s3", endpoint_url=srv.url, region_name=REGION,
                          aws_access_key_id=key[0], aws_secret_access_key=key[1])
        s3.create_bucket(Bucket="matrix")
        s3.put_object(Bucket="matrix", Key="object.txt", Body=OBJECT, ContentType="text/plain")
        r = httpx.post(f"{srv.url}/dayfly/v1/ingest/sources", json={"name": "matrix-src"},
                       headers=bearer)
        assert r.status_code == 201, r.text
        yield Node(srv.url, token, key, r.json()["token"])
    finally:
        stop_server(srv)


def prepare(node: Node, cred: str, call: Call, fn: str) -> tuple[str, dict[str, str]]:
    """The URL and headers of `call` carrying credential form `cred`, signed by botocore."""
    url = node.url + call.path.format(fn=fn)
    headers = dict(call.headers)
    simple = {"token": f"Bearer {node.token}", "token-forged": "Bearer dfy_00000000_forged",
              "ingest-token": f"Bearer {node.ingest_token}"}
    if cred in simple:
        headers["authorization"] = simple[cred]
        return url, headers
    if cred == "query-s3-bare":
        return url + ("&" if "?" in url else "?") + BARE_S3_QUERY, headers
    if cred == "none":
        return url, headers
    key, secret = node.s3_key
    signers = {
        "sigv4-token": lambda: SigV4Auth(Credentials(node.token, "unused"), "lambda", REGION),
        "sigv4-forged": lambda: SigV4Auth(Credentials("AKIAFORGEDFORGED", "x"), "lambda", REGION),
        "sigv4-s3": lambda: S3SigV4Auth(Credentials(key, secret), "s3", REGION),
        "sigv4-s3-forged": lambda: S3SigV4Auth(Credentials(key, "not-the-secret"), "s3", REGION),
        "sigv4-s3-token": lambda: S3SigV4Auth(Credentials(node.token, "unused"), "s3", REGION),
        "presigned-s3": lambda: S3SigV4QueryAuth(Credentials(key, secret), "s3", REGION, 300),
        "presigned-s3-forged": lambda: S3SigV4QueryAuth(Credentials(key, "not-the-secret"), "s3",
                                                        REGION, 300),
        "presigned-token": lambda: SigV4QueryAuth(Credentials(node.token, "unused"), "lambda",
                                                  REGION, 300),
        "presigned-forged": lambda: SigV4QueryAuth(Credentials("AKIAFORGEDFORGED", "x"), "lambda",
                                                   REGION, 300),
    }
    request = AWSRequest(method=call.method, url=url, data=call.body, headers=headers)
    signers[cred]().add_auth(request)
    assert urlsplit(request.url).netloc == urlsplit(url).netloc
    return request.url, dict(request.headers.items())


def outcome(r: httpx.Response) -> str:
    if 200 <= r.status_code < 300:
        return "ok"
    if r.status_code == 401 and r.headers.get("x-amzn-errortype") == "UnauthorizedException":
        return "401"
    if r.headers.get("content-type", "").startswith("application/xml") and "<Error>" in r.text:
        return "s3"
    return str(r.status_code)


@pytest.mark.parametrize("cred", CREDENTIALS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_with_every_credential(node, family, cred):
    call, expected = FAMILIES[family], EXPECTED[family][cred]
    fn = "target" if expected == "ok" else "victim"
    url, headers = prepare(node, cred, call, fn)
    token = {"authorization": f"Bearer {node.token}"}
    before = runs(node.url, "victim", token)
    r = httpx.request(call.method, url, content=call.body, headers=headers, timeout=60)
    assert outcome(r) == expected, (r.status_code, r.headers, r.text[:300])
    if expected == "ok":
        assert r.status_code == call.ok, r.text[:300]
        if family == "s3":
            assert r.content == OBJECT
    assert runs(node.url, "victim", token) == before  # nothing refused ran or was queued


def test_a_public_function_is_open_but_the_s3_way_in_still_is_s3s(node):
    public = {"handler.py": "def handler(event, context):\n    return {'public': True}\n",
              "dayfly.toml": 'handler = "handler.handler"\npublic = true\n'}
    deploy(node.url, "open-fn", public, headers={"authorization": f"Bearer {node.token}",
                                                 "content-type": "application/zip"})
    url = f"{node.url}{INVOKE.format(fn='open-fn')}"
    assert httpx.post(url, content=b"{}").json() == {"public": True}
    r = httpx.post(f"{url}?{BARE_S3_QUERY}", content=b"{}")
    assert outcome(r) == "s3", r.text
