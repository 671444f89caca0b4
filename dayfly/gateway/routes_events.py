"""Events and responses in AWS's shapes: API Gateway HTTP API payload 2.0 (routes), the
function URL event (2.0 with `$default`), REST API proxy payload 1.0 (routes that ask), and
the handler's result mapped back to HTTP as API Gateway maps it.

Response mapping (API Gateway's "format inference"): a JSON object with `statusCode` is a
response (`headers`, `multiValueHeaders`, `cookies`, `body`, `isBase64Encoded`); any other
result of a 2.0 integration is a 200 `application/json` whose body is the result's JSON; a
1.0 integration without `statusCode` is API Gateway's 502. A function error is a 502
`{"message":"Internal Server Error"}`.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

from ..types import ACCOUNT_ID

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
              "application/x-www-form-urlencoded", "application/graphql", "+json", "+xml")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_IDENTITY = ("accessKey", "accountId", "caller", "cognitoAuthenticationProvider",
             "cognitoAuthenticationType", "cognitoIdentityId", "cognitoIdentityPoolId",
             "principalOrgId", "user", "userArn")
ERROR_BODY = b'{"message":"Internal Server Error"}'


class Request:
    """What the gateway read of one HTTP request, shared by every event shape."""

    __slots__ = (
        "body",
        "domain",
        "epoch_ms",
        "headers",
        "method",
        "protocol",
        "query",
        "raw_path",
        "request_id",
        "source_ip",
    )

    def __init__(self, method: str, raw_path: str, query: str,
                 headers: list[tuple[bytes, bytes]], body: bytes, source_ip: str,
                 protocol: str, request_id: str, domain: str) -> None:
        self.method, self.raw_path, self.query = method, raw_path, query
        self.headers, self.body, self.source_ip = headers, body, source_ip
        self.protocol, self.request_id, self.domain = protocol, request_id, domain
        self.epoch_ms = int(time.time() * 1000)


def _apigw_time(epoch_ms: int) -> str:
    t = time.gmtime(epoch_ms / 1000)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:" \
           f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def _headers(req: Request) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """(headers joined with ',', every value per header, cookies) with lower-case names."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    cookies: list[str] = []
    for k, v in req.headers:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        multi.setdefault(name, []).append(value)
        single[name] = f"{single[name]},{value}" if name in single else value
    return single, multi, cookies


def _body(req: Request, headers: dict[str, str]) -> tuple[str | None, bool]:
    if not req.body:
        return None, False
    ctype = headers.get("content-type", "").lower()
    if not ctype or any(t in ctype for t in TEXT_TYPES):
        try:
            return req.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(req.body).decode("ascii"), True


def _query(raw: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    multi: dict[str, list[str]] = {}
    for k, v in parse_qsl(raw, keep_blank_values=True):
        multi.setdefault(k, []).append(v)
    return {k: ",".join(v) for k, v in multi.items()}, multi


def event_v2(req: Request, route_key: str, path_params: dict[str, str], *, api_id: str,
             stage: str, stage_variables: dict[str, str],
             authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """API Gateway HTTP API payload 2.0; with route_key `$default` also the function URL event."""
    headers, _, cookies = _headers(req)
    body, b64 = _body(req, headers)
    ev: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": req.raw_path,
                          "rawQueryString": req.query}
    if cookies:
        ev["cookies"] = cookies
    ev["headers"] = headers
    if req.query:
        ev["queryStringParameters"] = _query(req.query)[0]
    ctx: dict[str, Any] = {
        "accountId": ACCOUNT_ID, "apiId": api_id, "domainName": req.domain,
        "domainPrefix": req.domain.split(".", 1)[0],
        "http": {"method": req.method, "path": req.raw_path, "protocol": req.protocol,
                 "sourceIp": req.source_ip, "userAgent": headers.get("user-agent", "")},
        "requestId": req.request_id, "routeKey": route_key, "stage": stage,
        "time": _apigw_time(req.epoch_ms), "timeEpoch": req.epoch_ms}
    if authorizer:
        ctx["authorizer"] = authorizer
    ev["requestContext"] = ctx
    if body is not None:
        ev["body"] = body
    if path_params:
        ev["pathParameters"] = {k: unquote(v) for k, v in path_params.items()}
    ev["isBase64Encoded"] = b64
    if stage_variables:
        ev["stageVariables"] = dict(stage_variables)
    return ev


def event_v1(req: Request, route_key: str, path_params: dict[str, str], *, api_id: str,
             stage: str, stage_variables: dict[str, str],
             authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The REST API proxy event (payload 1.0), for handlers written against it."""
    headers, multi, cookies = _headers(req)
    if cookies:
        headers["cookie"] = "; ".join(cookies)
        multi["cookie"] = [headers["cookie"]]
    body, b64 = _body(req, headers)
    single_q, multi_q = _query(req.query)
    resource = route_key.split(" ", 1)[1] if " " in route_key else "/{proxy+}"
    identity: dict[str, str | None] = dict.fromkeys(_IDENTITY)
    identity.update(sourceIp=req.source_ip, userAgent=headers.get("user-agent", ""))
    ctx: dict[str, Any] = {
        "accountId": ACCOUNT_ID, "apiId": api_id, "domainName": req.domain,
        "domainPrefix": req.domain.split(".", 1)[0], "extendedRequestId": req.request_id,
        "httpMethod": req.method, "identity": identity, "path": req.raw_path,
        "protocol": req.protocol, "requestId": req.request_id,
        "requestTime": _apigw_time(req.epoch_ms), "requestTimeEpoch": req.epoch_ms,
        "resourceId": route_key, "resourcePath": resource, "stage": stage}
    if authorizer:
        ctx["authorizer"] = authorizer.get("jwt", authorizer)
    return {"version": "1.0", "resource": resource, "path": req.raw_path,
            "httpMethod": req.method, "headers": headers, "multiValueHeaders": multi,
            "queryStringParameters": single_q or None,
            "multiValueQueryStringParameters": multi_q or None, "requestContext": ctx,
            "pathParameters": {k: unquote(v) for k, v in path_params.items()} or None,
            "stageVariables": dict(stage_variables) or None, "body": body,
            "isBase64Encoded": b64}


class Mapped:
    """An HTTP response made from a handler's result."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def error(status: int = 502, message: str = "Internal Server Error",
          extra: list[tuple[bytes, bytes]] | None = None) -> Mapped:
    body = orjson.dumps({"message": message})
    return Mapped(status, [(b"content-type", b"application/json"), *(extra or [])], body)


# the response's framing and its connection are the node's: a function's Content-Length or
# Transfer-Encoding beside the node's own framing makes a response that a client or a proxy in
# front reads to another end than the node wrote (API Gateway drops or remaps them too)
NODE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                          "upgrade", "te", "trailer", "proxy-connection", "http2-settings"})


def _h(name: Any, value: Any) -> tuple[bytes, bytes] | None:
    """A response header, or None if it cannot be one (no CR/LF may reach the wire, and the
    framing and connection headers are the node's)."""
    n = str(name)
    if n.lower() in NODE_HEADERS:
        return None
    if isinstance(value, bool):
        v = "true" if value else "false"
    elif isinstance(value, str):
        v = value
    elif isinstance(value, int | float):
        v = str(value)
    else:
        v = orjson.dumps(value).decode()
    if not n or any(c in n for c in "\r\n:\0 ") or any(c in v for c in "\r\n\0"):
        return None
    return n.lower().encode("latin-1", "replace"), v.encode("latin-1", "replace")


def map_head(head: dict[str, Any] | None) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Status and headers of a streamed response, from the head its function sent first."""
    head = head if isinstance(head, dict) else {}
    status = head.get("statusCode", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        status = 200
    headers = [h for n, v in (head.get("headers") or {}).items() if (h := _h(n, v))]
    headers += [h for c in head.get("cookies") or [] if (h := _h("set-cookie", c))]
    if not any(n == b"content-type" for n, _ in headers):
        headers.append((b"content-type", b"application/octet-stream"))
    return status, headers


def map_response(payload: bytes, version: str) -> Mapped:
    """The HTTP response API Gateway makes of a handler's (successful) result."""
    try:
        result = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return error()
    if not isinstance(result, dict) or "statusCode" not in result:
        if version == "1.0":
            return error()  # REST API proxy integrations must answer with a statusCode
        return Mapped(200, [(b"content-type", b"application/json")], payload)
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return error()
    headers: list[tuple[bytes, bytes]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        return error()
    for name, values in multi.items():
        for value in values if isinstance(values, list) else [values]:
            h = _h(name, value)
            if h:
                headers.append(h)
    have = {h[0] for h in headers}
    for name, value in single.items():
        h = _h(name, value)
        if h and h[0] not in have:
            headers.append(h)
    for cookie in result.get("cookies") or []:
        h = _h("set-cookie", cookie)
        if h:
            headers.append(h)
    body = result.get("body")
    if body is None:
        raw = b""
    elif isinstance(body, str):
        if result.get("isBase64Encoded"):
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                return error()
        else:
            raw = body.encode("utf-8")
    else:
        raw = orjson.dumps(body)
    if not any(n == b"content-type" for n, _ in headers) and version == "2.0" and raw:
        headers.append((b"content-type", b"application/json"))
    return Mapped(status, headers, raw)
