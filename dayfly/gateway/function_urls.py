"""Lambda's Function URL API (2021-10-31): create, get, update, delete and list a function's
URL configs, so boto3 and the aws CLI work. A config lives in the function's $LATEST
configuration (`FunctionConfig.urls`, by qualifier: "" or an alias), so every node learns of
it with the registry; `routes.py` serves it at `<fn>[--<alias>].<node name>` and `/url/<fn>/`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.registry import split_name
from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from ..numbers import digits
from ..types import LATEST
from .common import JSON, json_body
from .origin import host_name
from .routes_table import url_id, validate_cors

AUTH_TYPES = ("NONE", "AWS_IAM")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
_CORS = {"AllowOrigins": "allow_origins", "AllowMethods": "allow_methods",
         "AllowHeaders": "allow_headers", "ExposeHeaders": "expose_headers",
         "MaxAge": "max_age", "AllowCredentials": "allow_credentials"}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _target(request: Request) -> tuple[str, str]:
    """(function, qualifier key): "" for none or $LATEST, else an existing alias."""
    name, qualifier = split_name(request.path_params["name"],
                                 request.query_params.get("Qualifier"))
    p = request.app.state.platform
    st = p.registry.get(name)
    if qualifier in (None, "", LATEST):
        return name, ""
    if digits(qualifier):
        raise InvalidParameter("A function URL's Qualifier must be an alias or $LATEST, not a "
                               "version number")
    if qualifier not in st.aliases:
        raise ResourceNotFound(f"Alias not found: {p.arn(name, qualifier)}")
    return name, qualifier


def _cors(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(_CORS):
        raise InvalidParameter(f"Cors must be an object with some of {', '.join(_CORS)}")
    return validate_cors({_CORS[k]: v for k, v in value.items()}, "Cors")


def _values(body: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(current or {})
    if "AuthType" in body or current is None:
        if body.get("AuthType") not in AUTH_TYPES:
            raise InvalidParameter(f"1 validation error detected: Value '{body.get('AuthType')}' "
                                   "at 'authType' failed to satisfy constraint: Member must "
                                   f"satisfy enum value set: [{', '.join(AUTH_TYPES)}]")
        out["auth_type"] = body["AuthType"]
    if "Cors" in body:
        out["cors"] = _cors(body["Cors"])
    if "InvokeMode" in body or current is None:
        mode = body.get("InvokeMode", "BUFFERED")
        if mode not in INVOKE_MODES:
            raise InvalidParameter(f"InvokeMode must be one of {', '.join(INVOKE_MODES)}")
        out["invoke_mode"] = mode
    return out


def _shape(request: Request, name: str, qualifier: str, url: dict[str, Any],
           created_only: bool = False) -> dict[str, Any]:
    p = request.app.state.platform
    authority = request.headers.get("host", "")
    host = host_name(authority)
    port = authority.rsplit(":", 1)[1] if ":" in authority.rsplit("]", 1)[-1] else ""
    base = "localhost" if not host or _literal(host) else host
    netloc = f"{url_id(name, qualifier or None).lower()}.{base}" + (f":{port}" if port else "")
    scheme = request.url.scheme
    out: dict[str, Any] = {
        "FunctionUrl": f"{scheme}://{netloc}/",
        "FunctionArn": p.arn(name, qualifier or None),
        "AuthType": url["auth_type"],
        "CreationTime": _iso(url["created"]),
        "InvokeMode": url.get("invoke_mode", "BUFFERED"),
        "Dayfly": {"PathUrl": f"{scheme}://{authority}/url/{url_id(name, qualifier or None)}/"},
    }
    if url.get("cors"):
        out["Cors"] = {k: url["cors"][v] for k, v in _CORS.items()
                       if url["cors"].get(v) not in (None, [], 0, False)}
    if not created_only:
        out["LastModifiedTime"] = _iso(url["modified"])
    return out


def _literal(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


async def _store(request: Request, name: str, qualifier: str,
                 url: dict[str, Any] | None) -> None:
    """Write $LATEST's URL configs (same revision: the warm instances stay)."""
    p = request.app.state.platform
    async with p.functions._locks[name]:
        st = p.registry.get(name)
        urls = dict(st.latest.urls)
        if url is None:
            urls.pop(qualifier, None)
        else:
            urls[qualifier] = url
        await p.registry.put_latest(replace(st.latest, urls=urls))


def _others_id(request: Request, name: str, qualifier: str) -> None:
    """URL ids are host labels (case-insensitive): refuse one another function already has."""
    mine = url_id(name, qualifier or None).lower()
    for other, st in request.app.state.platform.registry.functions.items():
        for q in st.latest.urls:
            if other != name and url_id(other, q or None).lower() == mine:
                raise ResourceConflict(f"function {other!r} already has the URL id {mine!r}")


async def create_url(request: Request) -> Response:
    name, qualifier = _target(request)
    body = await json_body(request)
    st = request.app.state.platform.registry.get(name)
    if qualifier in st.latest.urls:
        raise ResourceConflict(f"Failed to create function url config for [functionArn = "
                               f"{request.app.state.platform.arn(name, qualifier or None)}]. "
                               "Error message:  FunctionUrlConfig exists for this Lambda "
                               "function")
    _others_id(request, name, qualifier)
    url = _values(body, None)
    url["created"] = url["modified"] = time.time()
    await _store(request, name, qualifier, url)
    return JSON(_shape(request, name, qualifier, url, created_only=True), status_code=201)


def _current(request: Request) -> tuple[str, str, dict[str, Any]]:
    name, qualifier = _target(request)
    url = request.app.state.platform.registry.get(name).latest.urls.get(qualifier)
    if url is None:
        raise ResourceNotFound("The resource you requested does not exist.")
    return name, qualifier, url


async def get_url(request: Request) -> Response:
    name, qualifier, url = _current(request)
    return JSON(_shape(request, name, qualifier, url))


async def update_url(request: Request) -> Response:
    name, qualifier, url = _current(request)
    new = _values(await json_body(request), url)
    new["modified"] = time.time()
    await _store(request, name, qualifier, new)
    return JSON(_shape(request, name, qualifier, new))


async def delete_url(request: Request) -> Response:
    name, qualifier, _ = _current(request)
    await _store(request, name, qualifier, None)
    return Response(status_code=204)


async def list_urls(request: Request) -> Response:
    name, _ = split_name(request.path_params["name"])
    urls = request.app.state.platform.registry.get(name).latest.urls
    items = [_shape(request, name, q, u) for q, u in sorted(urls.items())]
    marker = request.query_params.get("Marker")
    start = int(marker) if digits(marker) else 0
    max_items = request.query_params.get("MaxItems")
    limit = int(max_items) if digits(max_items) and int(max_items) > 0 else 50
    out: dict[str, Any] = {"FunctionUrlConfigs": items[start:start + limit]}
    if start + limit < len(items):
        out["NextMarker"] = str(start + limit)
    return JSON(out)


U = "/2021-10-31/functions/{name}"
routes = [
    Route(f"{U}/url", create_url, methods=["POST"]),
    Route(f"{U}/url", get_url, methods=["GET"]),
    Route(f"{U}/url", update_url, methods=["PUT"]),
    Route(f"{U}/url", delete_url, methods=["DELETE"]),
    Route(f"{U}/urls", list_urls, methods=["GET"]),
]
