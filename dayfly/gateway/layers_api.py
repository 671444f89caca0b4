"""Lambda's layer API (2018-10-31): publish, list, get and delete layer versions."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.functions import decode_zip
from ..control.layers import ARN_RE, Layers, LayerVersion, layer_arn
from ..errors import InvalidParameter
from ..numbers import digits
from .common import JSON, json_body

L = "/2018-10-31/layers"
LAYER_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:layer:([A-Za-z0-9_-]{1,140})$")


def _layers(request: Request) -> Layers:
    return request.app.state.platform.functions.layers


def _name(request: Request) -> str:
    """The layer named in the path: a name, or a layer ARN (boto3 accepts both)."""
    name = request.path_params["name"]
    m = LAYER_ARN.match(name)
    return m.group(1) if m else name


def _page(request: Request, items: list) -> tuple[list, str | None]:
    marker = request.query_params.get("Marker")
    start = int(marker) if digits(marker) else 0
    max_items = request.query_params.get("MaxItems")
    limit = int(max_items) if digits(max_items) and int(max_items) > 0 else 50
    more = str(start + limit) if start + limit < len(items) else None
    return items[start:start + limit], more


def _matching(request: Request, versions: list[LayerVersion]) -> list[LayerVersion]:
    """The versions that fit the CompatibleRuntime / CompatibleArchitecture filters."""
    runtime = request.query_params.get("CompatibleRuntime")
    arch = request.query_params.get("CompatibleArchitecture")
    return [v for v in versions if (not runtime or runtime in v.runtimes)
            and (not arch or arch in v.architectures)]


async def publish(request: Request) -> Response:
    params = await json_body(request)
    content = params.get("Content")
    layer = await _layers(request).publish(_name(request), decode_zip(content),
                                           params)
    base = str(request.base_url).rstrip("/")
    return JSON(layer.to_lambda(_layers(request).region, base), status_code=201)


async def list_layers(request: Request) -> Response:
    if request.query_params.get("find") == "LayerVersion":  # GetLayerVersionByArn
        m = ARN_RE.match(request.query_params.get("Arn", ""))
        if m is None or not m.group("version"):
            raise InvalidParameter("Arn must be a layer version ARN")
        layer = _layers(request).get(m.group("name"), m.group("version"))
        return JSON(layer.to_lambda(_layers(request).region, str(request.base_url).rstrip("/")))
    store = _layers(request)
    out = []
    for name in sorted(store.versions):
        latest = _matching(request, store.of(name))
        if latest:
            out.append({"LayerName": name, "LayerArn": layer_arn(store.region, name),
                        "LatestMatchingVersion": latest[0].summary(store.region)})
    page, more = _page(request, out)
    body: dict = {"Layers": page}
    if more:
        body["NextMarker"] = more
    return JSON(body)


async def list_versions(request: Request) -> Response:
    store = _layers(request)
    versions = _matching(request, store.of(_name(request)))
    page, more = _page(request, [v.summary(store.region) for v in versions])
    body: dict = {"LayerVersions": page}
    if more:
        body["NextMarker"] = more
    return JSON(body)


async def get_version(request: Request) -> Response:
    store = _layers(request)
    layer = store.get(_name(request), request.path_params["version"])
    return JSON(layer.to_lambda(store.region, str(request.base_url).rstrip("/")))


async def delete_version(request: Request) -> Response:
    await _layers(request).delete(_name(request), request.path_params["version"])
    return Response(status_code=204)


routes = [
    Route(L, list_layers, methods=["GET"]),
    Route(f"{L}/", list_layers, methods=["GET"]),
    Route(f"{L}/{{name}}/versions", publish, methods=["POST"]),
    Route(f"{L}/{{name}}/versions", list_versions, methods=["GET"]),
    Route(f"{L}/{{name}}/versions/{{version}}", get_version, methods=["GET"]),
    Route(f"{L}/{{name}}/versions/{{version}}", delete_version, methods=["DELETE"]),
]
