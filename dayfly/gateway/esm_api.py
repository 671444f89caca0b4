"""Lambda's event source mapping API (2015-03-31), for dayfly table sources: boto3's
create/list/get/update/delete_event_source_mapping work against it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InvalidParameter
from ..numbers import digits
from ..triggers.tables.source import parse_table_url
from .common import JSON, json_body


def _triggers(request: Request):
    return request.app.state.platform.triggers


async def create(request: Request) -> Response:
    t = _triggers(request)
    m = await t.create_mapping(await json_body(request, 256 * 1024))
    return JSON(t.mapping_json(m), status_code=202)


async def list_mappings(request: Request) -> Response:
    t = _triggers(request)
    q = request.query_params
    source = parse_table_url(q["EventSourceArn"]) if q.get("EventSourceArn") else None
    mappings = t.list_mappings(q.get("FunctionName") or None, source)
    marker, max_items = q.get("Marker") or "0", q.get("MaxItems") or "100"
    if not digits(marker) or not digits(max_items) or not 1 <= int(max_items) <= 10000:
        raise InvalidParameter("Marker must come from a previous answer and MaxItems be 1-10000")
    start, limit = int(marker), int(max_items)
    out: dict = {"EventSourceMappings": [t.mapping_json(m)
                                         for m in mappings[start:start + limit]]}
    if start + limit < len(mappings):
        out["NextMarker"] = str(start + limit)
    return JSON(out)


async def get(request: Request) -> Response:
    t = _triggers(request)
    return JSON(t.mapping_json(t.get_mapping(request.path_params["uuid"])))


async def update(request: Request) -> Response:
    t = _triggers(request)
    m = await t.update_mapping(request.path_params["uuid"], await json_body(request, 256 * 1024))
    return JSON(t.mapping_json(m), status_code=202)


async def delete(request: Request) -> Response:
    out = await _triggers(request).delete_mapping(request.path_params["uuid"])
    return JSON(out, status_code=202)


E = "/2015-03-31/event-source-mappings"
routes = [
    Route(E, create, methods=["POST"]),
    Route(f"{E}/", create, methods=["POST"]),
    Route(E, list_mappings, methods=["GET"]),
    Route(f"{E}/", list_mappings, methods=["GET"]),
    Route(f"{E}/{{uuid}}", get, methods=["GET"]),
    Route(f"{E}/{{uuid}}", update, methods=["PUT"]),
    Route(f"{E}/{{uuid}}", delete, methods=["DELETE"]),
]
