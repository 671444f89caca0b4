"""Session 5's new front doors tried as an attacker, against a real `dayfly up` with API tokens:
HTTP routes and function URLs (shadowing dayfly's APIs, framing and CR/LF headers in a
function's answer, a function's own S3 key as an AWS_IAM signature), the layers,
Function URL and provisioned concurrency APIs (no token, forged tokens, the node credential,
S3 signatures, hostile names, zips and bodies) and InvokeWithResponseStream. Each test fails if
its hole reopens."""

from __future__ import annotations

import base64
import configparser
import hashlib
import io
import json
import socket
import time
import types
import uuid
import zipfile

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import make_zip, start_server, stop_server

ROLE = "arn:aws:iam::000000000000:role/attacks"

ECHO = """
import json

def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps(event)}
"""

# a function's answer that tries to take over the framing of the response, and so the
# connection (a proxy in front that reads Content-Length where the node wrote chunks)
FRAMING = """
def handler(event, context):
    case = (event.get("pathParameters") or {}).get("case")
    if case == "framing":
        return {"statusCode": 200, "body": "0123456789",
                "headers": {"transfer-encoding": "chunked", "content-length": "2",
                            "connection": "keep-alive, upgrade", "upgrade": "websocket",
                            "keep-alive": "timeout=999", "x-fine": "yes"}}
    if case == "crlf":
        return {"statusCode": 200, "body": "b",
                "headers": {"x-a": "1\\r\\nx-injected: 1", "x-b\\r\\nx-injected": "2",
                            "x-c": "3\\nx-injected: 3", "x-fine": "yes"},
                "multiValueHeaders": {"x-d": ["4\\r\\n\\r\\nHTTP/1.1 200 OK"]},
                "cookies": ["a=1\\r\\nx-injected: 4"]}
    if case == "status":
        return {"statusCode": 99999, "body": "x"}
    return {"statusCode": 204}
"""

STREAM_HEAD = """
def handler(event, context):
    yield {"statusCode": 200, "headers": {"content-type": "text/plain",
                                          "content-length": "3", "x-s": "a\\r\\nx-injected: 1"}}
    yield "0123456789"
"""

KEYS = """
import os

def handler(event, context):
    return {"id": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"]}
"""


def _create(lam, name: str, code: str, toml: str = "") -> None:
    files = {"handler.py": code, "dayfly.toml": 'handler = "handler.handler"\n' + toml}
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": make_zip(files)})


class Node:
    def __init__(self, srv, token: str, key: tuple[str, str]) -> None:
        self.srv, self.url, self.token, self.key = srv, srv.url, token, key
        self.bearer = {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("attacks5") / "data")
    try:
        r = httpx.post(f"{srv.url}/dayfly/v1/tokens", json={"description": "attacks"})
        token = r.json()["token"]
        creds = configparser.ConfigParser()
        creds.read(srv.data_dir / "credentials")
        key = (creds["default"]["aws_access_key_id"], creds["default"]["aws_secret_access_key"])
        n = Node(srv, token, key)
        lam = lambda_client(n)
        _create(lam, "catchall", ECHO, '[http]\nroutes = ["$default"]\n')
        _create(lam, "framing", FRAMING, '[http]\nroutes = ["GET /attack/{case}"]\n')
        _create(lam, "streamhead", STREAM_HEAD, '[http]\nroutes = ["GET /streamed"]\n')
        _create(lam, "keyholder", KEYS, 'buckets = ["keyholder-bucket:read"]\n')
        _create(lam, "iam", ECHO)
        _create(lam, "tokened", ECHO, '[http]\nauth = "token"\nroutes = ["GET /tokened"]\n')
        lam.create_function_url_config(FunctionName="iam", AuthType="AWS_IAM")
        yield n
    finally:
        stop_server(srv)


def lambda_client(n: Node):
    import boto3
    from botocore.config import Config

    return boto3.client("lambda", endpoint_url=n.url, region_name="us-east-1",
                        aws_access_key_id=n.token, aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def signed(method: str, url: str, key: tuple[str, str], service: str, body: bytes = b"",
           headers: dict | None = None) -> dict[str, str]:
    """The headers of a SigV4 request for `service` signed with `key`."""
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(*key), service, "us-east-1").add_auth(req)
    return dict(req.headers.items())


def forged_node_credential(method: str, target: str, body: bytes = b"") -> str:
    ts = str(int(time.time() * 1000))
    return (f"DAYFLY-NODE node=node-x,ts={ts},nonce={uuid.uuid4().hex[:24]},"
            f"body={hashlib.sha256(body).hexdigest()},mac={'ab' * 32}")


# -- routes never shadow dayfly's APIs ---------------------------------------------------------

def test_a_default_route_never_takes_an_api_call_or_its_token(node):
    """A `$default` route catches every path no other route has; dayfly's API paths are not
    among them, or a function would read the operator's token off `dayfly layers ls` (and
    the API would be gone)."""
    layer_zip = base64.b64encode(make_zip({"python/x.py": "X = 1\n"})).decode()
    calls = [
        ("GET", "/2018-10-31/layers", None),
        ("POST", "/2018-10-31/layers/stolen/versions", {"Content": {"ZipFile": layer_zip}}),
        ("GET", "/2019-09-25/functions/catchall/event-invoke-config", None),
        ("POST", "/2021-11-15/functions/catchall/response-streaming-invocations", {}),
    ]
    for method, path, body in calls:
        r = httpx.request(method, node.url + path, json=body, headers=node.bearer)
        assert "routeKey" not in r.text and node.token not in r.text, (path, r.text[:300])
        assert r.headers.get("apigw-requestid") is None, path
        # without a token: the API's 401, not the route's answer nor an anonymous S3 one
        r = httpx.request(method, node.url + path, json=body)
        assert r.status_code == 401 and "UnauthorizedException" in r.text, (path, r.text[:300])
    r = httpx.get(f"{node.url}/2018-10-31/layers", headers=node.bearer)
    assert r.status_code == 200 and "Layers" in r.json()
    # a route at those paths cannot be declared either
    for path in ("/2018-10-31/layers", "/2019-09-25/x", "/2021-11-15/functions/f"):
        with pytest.raises(Exception) as exc:
            _create(lambda_client(node), f"shadow-{uuid.uuid4().hex[:6]}", ECHO,
                    f'[http]\nroutes = ["GET {path}"]\n')
        assert "reserved" in str(exc.value), path


# -- a function's answer cannot take over the response's framing or headers ---------------------

def raw_get(node: Node, path: str, then: str | None = None) -> bytes:
    """GET `path` on one kept-alive connection (and `then` after it); every byte received."""
    host = f"127.0.0.1:{node.srv.port}"
    requests = [path] + ([then] if then else [])
    last = len(requests) - 1
    close = "Connection: close\r\n"
    data = b"".join(f"GET {p} HTTP/1.1\r\nHost: {host}\r\n{close if i == last else ''}\r\n"
                    .encode() for i, p in enumerate(requests))
    with socket.create_connection(("127.0.0.1", node.srv.port), timeout=30) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def heads(raw: bytes) -> list[list[bytes]]:
    return [part.split(b"\r\n\r\n", 1)[0].split(b"\r\n") for part in raw.split(b"HTTP/1.1 ")[1:]]


def test_a_function_cannot_set_the_framing_headers(node):
    r = httpx.get(f"{node.url}/attack/framing")
    assert r.status_code == 200 and r.content == b"0123456789" and r.headers["x-fine"] == "yes"
    raw = raw_get(node, "/attack/framing", then="/attack/none")
    first = [h.lower() for h in heads(raw)[0]]
    names = [h.split(b":", 1)[0] for h in first[1:]]
    # one framing header, the node's own: never both, never the function's count
    assert names.count(b"content-length") + names.count(b"transfer-encoding") == 1, first
    assert b"content-length: 10" in first, first
    assert not any(n in (b"upgrade", b"keep-alive") for n in names), first
    assert b"connection: keep-alive, upgrade" not in first
    # and the connection is still in step: the next answer on it is the next request's
    assert raw.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 204" in raw, raw[-500:]


def test_a_streamed_head_cannot_set_the_framing_or_inject(node):
    r = httpx.get(f"{node.url}/streamed")
    assert r.status_code == 200 and r.content == b"0123456789", r.content
    assert "x-injected" not in r.headers and "x-s" not in r.headers
    assert "content-length" not in r.headers


def test_cr_lf_and_bad_status_from_a_function(node):
    raw = raw_get(node, "/attack/crlf")
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    assert b"x-injected" not in raw.lower() and raw.count(b"HTTP/1.1") == 1, raw
    assert b"x-fine: yes" in raw
    r = httpx.get(f"{node.url}/attack/status")
    assert r.status_code == 502


# -- credentials meant for something else ------------------------------------------------------

def test_a_functions_s3_key_is_no_aws_iam_signature(node):
    """A function that declares buckets holds an S3 key (hostile code reads its environment);
    that key is for its buckets, not for invoking AWS_IAM function URLs."""
    lam = lambda_client(node)
    out = json.loads(lam.invoke(FunctionName="keyholder")["Payload"].read())
    assert out["id"].startswith("DFN")
    url = f"{node.url}/url/iam/private?x=1"
    ok = httpx.get(url, headers=signed("GET", url, node.key, "lambda"))
    assert ok.status_code == 200 and "routeKey" in ok.text  # the node's key: the URL answers
    stolen = httpx.get(url, headers=signed("GET", url, (out["id"], out["secret"]), "lambda"))
    assert stolen.status_code == 403 and "routeKey" not in stolen.text, stolen.text
    # nor is an S3 signature, nor one for another service, nor a token as a Bearer
    for service in ("s3", "execute-api"):
        r = httpx.get(url, headers=signed("GET", url, node.key, service))
        assert r.status_code == 403 or "routeKey" not in r.text, (service, r.text[:200])
        assert "routeKey" not in r.text
    r = httpx.get(url, headers=node.bearer)
    assert r.status_code == 403 and "routeKey" not in r.text


def test_a_url_signature_opens_no_api(node):
    """A SigV4 signature for `lambda` with an S3 access key (what an AWS_IAM URL takes) is no
    API token: the Lambda, layers and URL-config APIs answer 401."""
    for method, path in [("GET", "/2015-03-31/functions/"), ("GET", "/2018-10-31/layers"),
                         ("POST", "/2021-10-31/functions/catchall/url"),
                         ("PUT", "/2019-09-30/functions/catchall/provisioned-concurrency"
                                 "?Qualifier=1")]:
        body = b'{"AuthType": "NONE", "ProvisionedConcurrentExecutions": 1}'
        url = node.url + path
        h = signed(method, url, node.key, "lambda", body, {"content-type": "application/json"})
        r = httpx.request(method, url, content=body, headers=h)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
    assert httpx.get(f"{node.url}/2021-10-31/functions/catchall/url",
                     headers=node.bearer).status_code == 404


@pytest.mark.parametrize("method,path", [
    ("POST", "/2018-10-31/layers/nodelayer/versions"),
    ("DELETE", "/2018-10-31/layers/nodelayer/versions/1"),
    ("POST", "/2021-10-31/functions/catchall/url"),
    ("PUT", "/2019-09-30/functions/catchall/provisioned-concurrency?Qualifier=1"),
    ("POST", "/2015-03-31/functions"),
    ("GET", "/dayfly/v1/nodes"),
])
def test_the_node_credential_opens_nothing_but_invokes(node, method, path):
    body = json.dumps({"AuthType": "NONE", "Content": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}})
    r = httpx.request(method, node.url + path, content=body, headers={
        "authorization": forged_node_credential(method, path, body.encode()),
        "content-type": "application/json"})
    assert r.status_code == 403, (path, r.status_code, r.text[:200])


def test_an_s3_signature_on_the_new_apis_stays_s3s(node):
    """Signed for s3 with a valid key, a request to the layers or URL-config path is the S3
    endpoint's (a bucket of that name), never the API's."""
    body = json.dumps({"AuthType": "NONE"}).encode()
    for method, path in [("POST", "/2018-10-31/layers/s3made/versions"),
                         ("POST", "/2021-10-31/functions/catchall/url")]:
        url = node.url + path
        r = httpx.request(method, url, content=body,
                          headers=signed(method, url, node.key, "s3", body))
        assert r.status_code >= 400 and r.text.startswith("<?xml"), (path, r.text[:200])
    assert "s3made" not in httpx.get(f"{node.url}/2018-10-31/layers", headers=node.bearer).text
    assert httpx.get(f"{node.url}/2021-10-31/functions/catchall/url",
                     headers=node.bearer).status_code == 404


# -- hostile input to the layers and URL APIs ---------------------------------------------------

@pytest.mark.parametrize("name", ["a%00b", "..%2F..%2Fetc", "a%2Fb", "%C3%A9t%C3%A9", "a" * 200,
                                  "a%0D%0Ax-injected:1", "trailing%0A"])
def test_hostile_layer_names(node, name):
    body = {"Content": {"ZipFile": base64.b64encode(make_zip({"python/x.py": "X=1\n"})).decode()}}
    r = httpx.post(f"{node.url}/2018-10-31/layers/{name}/versions", json=body,
                   headers=node.bearer)
    assert r.status_code in (400, 404), (name, r.status_code, r.text[:200])
    assert "x-injected" not in r.headers


@pytest.mark.parametrize("entries", [
    [("../../escaped.py", b"X = 1\n")],
    [("/abs/escaped.py", b"X = 1\n")],
    [("python/../../escaped.py", b"X = 1\n")],
])
def test_layer_zips_cannot_escape(node, entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name), data)
    r = httpx.post(f"{node.url}/2018-10-31/layers/traversal/versions",
                   json={"Content": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}},
                   headers=node.bearer)
    assert r.status_code == 400, r.text[:300]
    assert not list(node.srv.data_dir.parent.rglob("escaped.py"))


def test_huge_and_malformed_bodies(node):
    for path in ("/2018-10-31/layers/big/versions", "/2021-10-31/functions/catchall/url"):
        r = httpx.post(node.url + path, content=b"{" * 100_000, headers={
            **node.bearer, "content-type": "application/json"})
        assert r.status_code == 400, (path, r.text[:200])
        r = httpx.post(node.url + path, content=b"[1,2,3]", headers={
            **node.bearer, "content-type": "application/json"})
        assert r.status_code == 400, (path, r.text[:200])
    r = httpx.post(f"{node.url}/2021-10-31/functions/catchall/url",
                   json={"AuthType": "NONE", "Cors": {"AllowOrigins": ["x" * 100_000]}},
                   headers=node.bearer)
    assert r.status_code == 400, r.text[:200]
    r = httpx.put(f"{node.url}/2019-09-30/functions/catchall/provisioned-concurrency"
                  "?Qualifier=1", json={"ProvisionedConcurrentExecutions": 10**12},
                  headers=node.bearer)
    assert 400 <= r.status_code < 500, r.text[:200]


def test_every_api_prefix_is_reserved():
    """No route can shadow any of the app's own paths: their first segments are all reserved
    (a new API added without its prefix here would be a route's to take)."""
    from starlette.routing import Mount, Route

    from dayfly.gateway import app as app_module
    from dayfly.gateway.routes_table import RESERVED

    prefixes = set()
    modules = [m for m in vars(app_module).values() if isinstance(m, types.ModuleType)]
    for module in modules:
        for r in getattr(module, "routes", None) or []:
            if isinstance(r, Route | Mount) and r.path.strip("/"):
                prefixes.add(r.path.strip("/").split("/")[0])
    assert {"2015-03-31", "2018-10-31", "2019-09-25", "dayfly"} <= prefixes, prefixes
    assert prefixes <= RESERVED, prefixes - RESERVED
    assert "2021-11-15" in RESERVED  # InvokeWithResponseStream, served by the fast path


def test_new_api_routes_need_a_token(node):
    """No token, a forged one, the token in a URL, a presigned-looking query: the nodes list,
    the layers, URL-config and provisioned APIs and the streaming invoke answer 401 (or, for
    an S3-scoped query, S3's error): nothing runs, nothing is listed."""
    calls = [("GET", "/dayfly/v1/nodes"), ("GET", "/2018-10-31/layers"),
             ("GET", "/2021-10-31/functions/iam/url"),
             ("GET", "/2019-09-30/functions/catchall/provisioned-concurrency?List=ALL"),
             ("POST", "/2021-11-15/functions/keyholder/response-streaming-invocations")]
    for method, path in calls:
        url = node.url + path
        for headers in ({}, {"authorization": "Bearer forged"},
                        {"authorization": f"bearer  {node.token}x"}):
            r = httpx.request(method, url, headers=headers)
            assert r.status_code == 401, (path, headers, r.status_code, r.text[:200])
        sep = "&" if "?" in path else "?"
        r = httpx.request(method, f"{url}{sep}token={node.token}")
        assert r.status_code == 401, (path, r.text[:200])
        presigned = "X-Amz-Credential=AKIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        r = httpx.request(method, f"{url}{sep}{presigned}&X-Amz-Signature=00")
        assert r.status_code in (400, 401, 403), (path, r.text[:200])  # S3's error or 401
        assert r.status_code == 401 or r.text.startswith("<?xml"), (path, r.text[:200])


@pytest.mark.parametrize("cors", [
    {"ExposeHeaders": ["x-a\r\nset-cookie: planted=1"]},
    {"AllowHeaders": ["x-a\nx-b"]},
    {"AllowMethods": ["GET\r\nX-Injected: 1"]},
    {"AllowOrigins": ["https://a.example\r\nx-injected: 1"]},
    {"AllowOrigins": ["https://a.example, https://b.example"]},
    {"AllowHeaders": ["x-\u00e9"]},
    {"ExposeHeaders": ["x-a\n"]},
    {"AllowOrigins": ["https://a.example\n"]},
    {"AllowOrigins": ["*"], "AllowCredentials": True},
    {"AllowOrigins": ["https://a.example", "*"], "AllowCredentials": True},
])
def test_cors_settings_that_are_no_header_values_are_a_400(node, cors):
    """CORS settings go out as response headers: one with CR/LF or a character no header takes
    is refused when it is set (it broke every answer to a request with an Origin after)."""
    r = httpx.post(f"{node.url}/2021-10-31/functions/catchall/url", headers=node.bearer,
                   json={"AuthType": "NONE", "Cors": cors})
    assert r.status_code == 400, (cors, r.status_code, r.text[:200])
    assert httpx.get(f"{node.url}/2021-10-31/functions/catchall/url",
                     headers=node.bearer).status_code == 404


@pytest.mark.parametrize("field,value", [("FunctionName", "trailing\n"),
                                         ("FunctionName", "nul\u0000"),
                                         ("FunctionName", "caf\u00e9")])
def test_hostile_function_names(node, field, value):
    """`^...$` with re.match lets a trailing newline through: names are matched whole."""
    code = base64.b64encode(make_zip({"handler.py": ECHO})).decode()
    body = {"FunctionName": "fine", "Runtime": "python3.11", "Role": ROLE,
            "Handler": "handler.handler", "Code": {"ZipFile": code}, field: value}
    r = httpx.post(f"{node.url}/2015-03-31/functions", json=body, headers=node.bearer)
    assert r.status_code == 400, (value, r.status_code, r.text[:200])
    r = httpx.post(f"{node.url}/2015-03-31/functions/catchall/aliases", headers=node.bearer,
                   json={"Name": "live\n", "FunctionVersion": "$LATEST"})
    assert r.status_code == 400, r.text[:200]


@pytest.fixture(scope="module")
def plain_node(tmp_path_factory):
    """A node with a token and no routes (a `$default` route takes unsigned S3 requests)."""
    srv = start_server(tmp_path_factory.mktemp("attacks5-s3") / "data")
    try:
        token = httpx.post(f"{srv.url}/dayfly/v1/tokens", json={}).json()["token"]
        creds = configparser.ConfigParser()
        creds.read(srv.data_dir / "credentials")
        yield Node(srv, token, (creds["default"]["aws_access_key_id"],
                                creds["default"]["aws_secret_access_key"]))
    finally:
        stop_server(srv)


def test_anonymous_s3_gets_only_what_is_public(plain_node):
    """An unsigned request (no credential at all) is S3's anonymous caller: a public-read
    object is readable and nothing else is: not its ACL, the bucket's listing, policy, CORS
    rules or ACL, no write, delete or POST Object, no private object beside it."""
    import boto3

    node = plain_node

    s3 = boto3.client("s3", endpoint_url=node.url, region_name="us-east-1",
                      aws_access_key_id=node.key[0], aws_secret_access_key=node.key[1])
    s3.create_bucket(Bucket="anon-probe")
    s3.put_bucket_cors(Bucket="anon-probe", CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT", "POST", "DELETE"],
         "AllowedHeaders": ["*"]}]})
    s3.put_object(Bucket="anon-probe", Key="open.txt", Body=b"open", ACL="public-read")
    s3.put_object(Bucket="anon-probe", Key="closed.txt", Body=b"a private thing")
    base = f"{node.url}/anon-probe"
    assert httpx.get(f"{base}/open.txt").content == b"open"
    denied = [httpx.get(f"{base}/closed.txt"), httpx.get(f"{base}/open.txt?acl"),
              httpx.get(base), httpx.get(f"{base}?list-type=2"), httpx.get(f"{base}?policy"),
              httpx.get(f"{base}?cors"), httpx.get(f"{base}?acl"),
              httpx.put(f"{base}/open.txt", content=b"defaced"),
              httpx.put(f"{base}/new.txt", content=b"planted"),
              httpx.delete(f"{base}/open.txt"),
              httpx.put(f"{base}/open.txt?acl", headers={"x-amz-acl": "public-read-write"}),
              httpx.put(f"{base}?acl", headers={"x-amz-acl": "public-read-write"}),
              httpx.delete(f"{base}?cors"),
              httpx.post(base, files={"key": (None, "posted.txt"), "file": ("f", b"x")}),
              httpx.get(f"{node.url}/anon-probe/closed.txt", headers={"origin": "https://x"})]
    for r in denied:
        assert r.status_code in (400, 401, 403, 405), (r.request.method, r.request.url,
                                                       r.status_code, r.text[:200])
        assert b"a private thing" not in r.content, r.text[:200]
    assert s3.get_object(Bucket="anon-probe", Key="open.txt")["Body"].read() == b"open"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="anon-probe").get("Contents", [])]
    assert keys == ["closed.txt", "open.txt"]


def test_a_token_route_never_hands_the_token_to_its_function(node):
    """`auth = "token"` takes a dayfly API token, which can deploy and read everything: the
    node checks it and the function (untrusted code) never sees it in its event."""
    r = httpx.get(f"{node.url}/tokened?x=1", headers={**node.bearer, "x-other": "kept"})
    assert r.status_code == 200, r.text[:200]
    event = r.json()
    assert node.token not in r.text, event["headers"]
    assert "authorization" not in event["headers"] and event["headers"]["x-other"] == "kept"
