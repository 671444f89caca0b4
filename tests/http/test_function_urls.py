"""Lambda's Function URL API through boto3 and the aws CLI against a real `dayfly up`, and the
URLs themselves: host-based (`<fn>.localhost`) and path-based (`/url/<fn>/`), the function URL
event (checked with aws-lambda-powertools' LambdaFunctionUrlModel), AWS_IAM (SigV4 for service
lambda with the node's key) and CORS."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from aws_lambda_powertools.utilities.parser.models import LambdaFunctionUrlModel
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from http_helpers import deploy, unique

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "s3"))
from s3_helpers import aws_cli, credentials

SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts


@pytest.fixture(scope="module")
def fn(lam):
    name = unique("urlfn")
    deploy(lam, name, "")
    return name


def _host_get(server, host: str, path: str = "/", **kw) -> httpx.Response:
    """A request to the node with another Host (what `*.localhost` DNS would give)."""
    return httpx.get(f"{server.url}{path}", headers={"Host": host, **kw.pop("headers", {})},
                     **kw)


def test_create_get_update_list_delete(server, lam, fn):
    created = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    url = created["FunctionUrl"]
    assert urlsplit(url).hostname == f"{fn}.localhost" and url.endswith("/")
    assert created["FunctionArn"].endswith(f":function:{fn}")
    assert created["AuthType"] == "NONE" and created["InvokeMode"] == "BUFFERED"
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    got = lam.get_function_url_config(FunctionName=fn)
    assert got["FunctionUrl"] == url and "LastModifiedTime" in got
    updated = lam.update_function_url_config(
        FunctionName=fn, Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET"],
                               "MaxAge": 60})
    assert updated["Cors"]["AllowOrigins"] == ["https://app.example"]
    assert updated["AuthType"] == "NONE"
    listed = lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [url]
    # served by Host and by path, with the function URL event
    r = _host_get(server, f"{fn}.localhost:{server.port}", "/a/b?x=1")
    assert r.status_code == 200, r.text
    event = r.json()
    LambdaFunctionUrlModel.model_validate(event)
    assert event["routeKey"] == "$default" and event["rawPath"] == "/a/b"
    assert event["requestContext"]["domainName"] == f"{fn}.localhost"
    assert event["requestContext"]["domainPrefix"] == fn
    by_path = httpx.get(f"{server.url}/url/{fn}/a/b?x=1").json()
    LambdaFunctionUrlModel.model_validate(by_path)
    assert by_path["rawPath"] == "/a/b" and by_path["queryStringParameters"] == {"x": "1"}
    lam.delete_function_url_config(FunctionName=fn)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=fn)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_url_config(FunctionName=fn)
    assert httpx.get(f"{server.url}/url/{fn}/a").status_code == 404
    # the node's own API is never taken by a Host that names no function URL
    assert _host_get(server, f"{fn}.localhost:{server.port}", "/healthz").status_code == 403


def test_errors_of_the_api(server, lam, fn):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_function_url_config(FunctionName=unique("missing"), AuthType="NONE")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_function_url_config(FunctionName=fn, AuthType="NONE", Qualifier="nope")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_function_url_config(FunctionName=fn, AuthType="NONE",
                                       Cors={"MaxAge": 999999})


def test_qualifier_names_an_alias(server, lam, fn):
    version = lam.publish_version(FunctionName=fn)["Version"]
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=version)
    created = lam.create_function_url_config(FunctionName=fn, AuthType="NONE",
                                             Qualifier="live")
    assert created["FunctionArn"].endswith(f":function:{fn}:live")
    assert urlsplit(created["FunctionUrl"]).hostname == f"{fn}--live.localhost"
    event = httpx.get(f"{server.url}/url/{fn}--live/x").json()
    LambdaFunctionUrlModel.model_validate(event)
    lam.delete_function_url_config(FunctionName=fn, Qualifier="live")


def test_aws_iam_needs_a_sigv4_signature_for_lambda(server, lam, fn):
    lam.create_function_url_config(FunctionName=fn, AuthType="AWS_IAM")
    try:
        url = f"{server.url}/url/{fn}/signed?q=1"
        assert httpx.post(url, content=b"{}").status_code == 403
        key_id, secret = credentials(server.data_dir)

        def signed(secret: str, service: str = "lambda", body: bytes = b'{"a":1}') -> dict:
            req = AWSRequest("POST", url, data=body, headers={"content-type": "application/json"})
            SigV4Auth(Credentials(key_id, secret), service, "us-east-1").add_auth(req)
            return dict(req.headers)

        ok = httpx.post(url, content=b'{"a":1}', headers=signed(secret))
        assert ok.status_code == 200, ok.text
        event = ok.json()
        LambdaFunctionUrlModel.model_validate(event)
        assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == key_id
        assert event["body"] == '{"a":1}'
        # a wrong secret, a signature for s3, a body other than the signed one: 403 or S3's
        assert httpx.post(url, content=b'{"a":1}', headers=signed("wrong")).status_code == 403
        tampered = httpx.post(url, content=b'{"a":2}', headers=signed(secret))
        assert tampered.status_code == 403
        as_s3 = httpx.post(url, content=b'{"a":1}', headers=signed(secret, "s3"))
        assert as_s3.status_code != 200 and "routeKey" not in as_s3.text
    finally:
        lam.delete_function_url_config(FunctionName=fn)


def test_cors_preflight_is_answered_without_the_function(server, lam):
    name = unique("corsurl")
    # the handler would fail on any call: a preflight that reached it would not be a 204
    deploy(lam, name, "", code="def handler(event, context):\n    raise SystemExit(3)\n")
    lam.create_function_url_config(
        FunctionName=name, AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
              "AllowHeaders": ["x-custom"], "MaxAge": 300})
    pre = httpx.options(f"{server.url}/url/{name}/x", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    assert pre.headers["access-control-allow-methods"] == "GET,POST"
    assert pre.headers["access-control-allow-headers"] == "x-custom"
    assert pre.headers["access-control-max-age"] == "300"
    bad = httpx.options(f"{server.url}/url/{name}/x", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
    # the function never ran (no invocation counted); the gateway's
    # answers are counted per route
    metrics = httpx.get(f"{server.url}/metrics").text
    assert f'dayfly_invocations_total{{function="{name}"' not in metrics
    assert (f'dayfly_http_requests_total{{function="{name}",route="url:{name}",status="204"}} 1'
            in metrics)


def test_aws_cli_function_url_commands(server, tmp_path, fn):
    run = aws_cli(server, tmp_path)
    created = json.loads(run("lambda", "create-function-url-config", "--function-name", fn,
                             "--auth-type", "NONE", check=True).stdout)
    assert created["FunctionUrl"].startswith(f"http://{fn}.localhost")
    got = json.loads(run("lambda", "get-function-url-config", "--function-name", fn,
                         check=True).stdout)
    assert got["AuthType"] == "NONE"
    listed = json.loads(run("lambda", "list-function-url-configs", "--function-name", fn,
                            check=True).stdout)
    assert len(listed["FunctionUrlConfigs"]) == 1
    again = run("lambda", "create-function-url-config", "--function-name", fn,
                "--auth-type", "NONE")
    assert again.returncode != 0 and "ResourceConflictException" in again.stderr
    run("lambda", "delete-function-url-config", "--function-name", fn, check=True)
    gone = run("lambda", "get-function-url-config", "--function-name", fn)
    assert gone.returncode != 0 and "ResourceNotFoundException" in gone.stderr
