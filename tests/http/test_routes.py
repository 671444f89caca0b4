"""HTTP routes from dayfly.toml's [http] table, through httpx against a real `dayfly up`:
matching, AWS's event shapes (validated with aws-lambda-powertools' parser models), response
mapping, conflicts, and that routes never shadow dayfly's own APIs."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    APIGatewayProxyEventV2Model,
)
from http_helpers import deploy, unique


@pytest.fixture(scope="module")
def api(lam):
    """One function with a spread of routes; its name, used as the apiId of its events."""
    name = unique("api")
    deploy(lam, name, f"""
        [http]
        routes = ["GET /r-{name}/users/{{id}}", "POST /r-{name}/users",
                  "ANY /r-{name}/admin/{{proxy+}}", "GET /r-{name}/users/me",
                  {{ route = "GET /r-{name}/v1/{{id}}", payload_version = "1.0" }}]
        stage_variables = {{ color = "blue" }}
    """)
    return name


def test_path_parameters_query_cookies_and_headers_arrive_as_payload_2(server, api):
    r = httpx.get(f"{server.url}/r-{api}/users/42?a=1&a=2&b=x%20y",
                  headers={"X-Custom": "Yes", "Cookie": "s=1; t=2", "User-Agent": "ua/1"})
    assert r.status_code == 200, r.text
    event = r.json()
    APIGatewayProxyEventV2Model.model_validate(event)
    assert event["version"] == "2.0"
    assert event["routeKey"] == f"GET /r-{api}/users/{{id}}"
    assert event["rawPath"] == f"/r-{api}/users/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["headers"]["x-custom"] == "Yes" and "cookie" not in event["headers"]
    assert event["stageVariables"] == {"color": "blue"}
    ctx = event["requestContext"]
    assert ctx["http"] == {"method": "GET", "path": f"/r-{api}/users/42",
                           "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "ua/1"}
    assert ctx["routeKey"] == event["routeKey"] and ctx["stage"] == "$default"
    assert ctx["apiId"] == api and ctx["accountId"] == "000000000000"
    assert isinstance(ctx["timeEpoch"], int) and ctx["requestId"]
    assert event["isBase64Encoded"] is False and "body" not in event
    # the response: statusCode, headers, multiValueHeaders and cookies as API Gateway maps them
    assert r.headers["x-route"] == event["routeKey"]
    assert r.headers.get_list("x-multi") == ["a", "b"]
    assert r.headers.get_list("set-cookie") == ["c1=v1; Path=/", "c2=v2"]


def test_most_specific_route_wins(server, api):
    assert httpx.get(f"{server.url}/r-{api}/users/me").json()["routeKey"] == \
        f"GET /r-{api}/users/me"
    assert httpx.get(f"{server.url}/r-{api}/users/7").json()["pathParameters"] == {"id": "7"}
    greedy = httpx.delete(f"{server.url}/r-{api}/admin/a/b/c").json()
    assert greedy["pathParameters"] == {"proxy": "a/b/c"}
    assert greedy["requestContext"]["http"]["method"] == "DELETE"
    # no route: dayfly's own 404, and a method a route does not take is not that route's
    assert httpx.get(f"{server.url}/r-{api}/nothing").status_code == 404
    assert httpx.put(f"{server.url}/r-{api}/users").status_code == 404


def test_text_and_binary_bodies(server, api):
    text = httpx.post(f"{server.url}/r-{api}/users", json={"n": 1}).json()
    assert text["body"] == '{"n":1}' and text["isBase64Encoded"] is False
    raw = bytes(range(256))
    binary = httpx.post(f"{server.url}/r-{api}/users", content=raw,
                        headers={"content-type": "application/octet-stream"}).json()
    APIGatewayProxyEventV2Model.model_validate(binary)
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == raw
    out = httpx.get(f"{server.url}/r-{api}/users/1?binary=1")
    assert out.headers["content-type"] == "image/png" and out.content == raw


def test_payload_1_0_route(server, api):
    r = httpx.get(f"{server.url}/r-{api}/v1/9?x=1&x=2", headers={"Cookie": "k=v"})
    event = r.json()
    APIGatewayProxyEventModel.model_validate(event)
    assert event["version"] == "1.0" and event["httpMethod"] == "GET"
    assert event["resource"] == f"/r-{api}/v1/{{id}}" and event["path"] == f"/r-{api}/v1/9"
    assert event["pathParameters"] == {"id": "9"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["headers"]["cookie"] == "k=v"
    assert event["stageVariables"] == {"color": "blue"}
    # 1.0 without statusCode is API Gateway's 502
    assert httpx.get(f"{server.url}/r-{api}/v1/9?bare=1").status_code == 502


def test_bare_results_errors_and_statuses(server, api):
    bare = httpx.get(f"{server.url}/r-{api}/users/1?bare=1")
    assert bare.status_code == 200 and bare.json() == {"bare": True}
    assert bare.headers["content-type"] == "application/json"
    text = httpx.get(f"{server.url}/r-{api}/users/1?text=1")
    assert text.status_code == 200 and text.json() == "just text"
    failed = httpx.get(f"{server.url}/r-{api}/users/1?raise=1")
    assert failed.status_code == 502 and failed.json() == {"message": "Internal Server Error"}
    assert httpx.get(f"{server.url}/r-{api}/users/1?status=418").status_code == 418


def test_conflicting_route_is_refused_naming_the_other_function(server, lam, api):
    other = unique("other")
    with pytest.raises(lam.exceptions.ResourceConflictException) as exc:
        deploy(lam, other, f"""
            [http]
            routes = ["GET /r-{api}/users/{{uid}}"]
        """)
    assert api in str(exc.value) and f"GET /r-{api}/users/{{id}}" in str(exc.value)
    assert other not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


def test_routes_cannot_take_dayfly_paths(server, lam):
    for path in ("/2015-03-31/functions/x", "/dayfly/v1/anything", "/ui/x", "/metrics",
                 "/url/x", "/healthz"):
        with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
            deploy(lam, unique("reserved"), f"""
                [http]
                routes = ["GET {path}"]
            """)
        assert "reserved" in str(exc.value)


def test_default_route_never_shadows_the_apis(server, lam):
    name = unique("catchall")
    deploy(lam, name, """
        [http]
        routes = ["$default"]
    """)
    try:
        hit = httpx.get(f"{server.url}/anything/at/all?x=1").json()
        assert hit["routeKey"] == "$default" and hit["rawPath"] == "/anything/at/all"
        # the Lambda API, /healthz and the dashboard answer as before
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        listed = httpx.get(f"{server.url}/2015-03-31/functions").json()
        assert name in [f["FunctionName"] for f in listed["Functions"]]
        invoked = httpx.post(f"{server.url}/2015-03-31/functions/{name}/invocations",
                             content=json.dumps({"queryStringParameters": {"bare": "1"}}))
        assert invoked.json() == {"bare": True}
    finally:
        server.lambda_client().delete_function(FunctionName=name)
    assert httpx.get(f"{server.url}/anything/at/all").status_code == 404
