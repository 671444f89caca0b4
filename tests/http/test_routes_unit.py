"""The route table, [http] validation and response mapping, without a server."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from dayfly.errors import InvalidParameter, ResourceConflict
from dayfly.gateway.routes_events import map_response
from dayfly.gateway.routes_table import Table, check_conflicts, validate_http


def functions(**http_of: list) -> dict:
    return {name: SimpleNamespace(latest=SimpleNamespace(
        http=validate_http({"routes": routes}), urls={})) for name, routes in http_of.items()}


def test_most_specific_match():
    t = Table.build(functions(a=["GET /p/{id}", "GET /p/me", "ANY /p/{rest+}", "$default"],
                              b=["POST /p/{id}"]))
    assert t.match("GET", "/p/me").entry.key == "GET /p/me"
    m = t.match("GET", "/p/7")
    assert (m.entry.key, m.params) == ("GET /p/{id}", {"id": "7"})
    assert t.match("POST", "/p/7").entry.function == "b"
    assert t.match("PUT", "/p/7").entry.key == "ANY /p/{rest+}"
    assert t.match("GET", "/p/a/b").params == {"rest": "a/b"}
    assert t.match("GET", "/elsewhere").entry.key == "$default"
    for path in ("/", "/2015-03-31/functions", "/ui/x", "/url/a/b", "/metrics", "/dayfly/v1"):
        assert t.match("GET", path) is None


@pytest.mark.parametrize("bad", [
    "GET users", "FETCH /x", "GET /a//b", "GET /a/", "GET /{a+}/b", "GET /{a}/{a}",
    "GET /dayfly/x", "GET /", "GET /a b", "GET /{}"])
def test_bad_route_keys(bad):
    with pytest.raises(InvalidParameter):
        validate_http({"routes": [bad]})


def test_same_route_twice_and_other_keys():
    with pytest.raises(InvalidParameter, match="same route"):
        validate_http({"routes": ["GET /a/{x}", "GET /a/{y}"]})
    with pytest.raises(InvalidParameter, match="jwt"):
        validate_http({"routes": ["GET /a"], "auth": "jwt"})
    with pytest.raises(InvalidParameter, match="unknown"):
        validate_http({"routez": []})
    with pytest.raises(InvalidParameter, match="max_body"):
        validate_http({"routes": ["GET /a"], "max_body": 0})


def test_conflicts_name_the_other_function():
    fns = functions(owner=["GET /x/{id}"])
    with pytest.raises(ResourceConflict, match="owner"):
        check_conflicts(fns, "new", validate_http({"routes": ["GET /x/{other}"]}))
    check_conflicts(fns, "owner", validate_http({"routes": ["GET /x/{other}"]}))  # itself
    check_conflicts(fns, "new", validate_http({"routes": ["POST /x/{id}"]}))


def test_response_mapping():
    out = map_response(orjson.dumps({"statusCode": 201, "headers": {"a": "1", "bad\r\nx": "y",
                                                                      "b": "evil\r\nSet-Cookie: x"},
                                     "body": "hi"}), "2.0")
    assert out.status == 201 and out.body == b"hi"
    assert (b"a", b"1") in out.headers and all(b"\r" not in n + v for n, v in out.headers)
    assert map_response(b'"text"', "2.0").body == b'"text"'
    assert map_response(b'{"statusCode": 99}', "2.0").status == 502
    assert map_response(b'{"statusCode": 200, "body": "%%", "isBase64Encoded": true}',
                        "2.0").status == 502
    assert map_response(b'{"x": 1}', "1.0").status == 502
