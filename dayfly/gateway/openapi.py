"""`GET /openapi.json`: an OpenAPI 3.1 document of dayfly's own endpoints (/dayfly/v1, /healthz,
/metrics), generated from the routing table so that no route goes undocumented, with the
details written down in `openapi_details.py`."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from .common import JSON
from .openapi_details import OPERATIONS

_PARAM = re.compile(r"{(\w+)}")
ERROR = {"type": "object", "required": ["message"], "additionalProperties": True,
         "properties": {"message": {"type": "string"}, "__type": {"type": "string"},
                        "hint": {"type": "string"}, "Type": {"type": "string"}}}
SECURITY = {"token": {"type": "http", "scheme": "bearer",
                      "description": "An API token (`dayfly token create`); required when dayfly "
                                     "is bound to a non-loopback address or any token exists."}}


def documented(path: str) -> bool:
    return path.startswith("/dayfly/v1/") or path in ("/healthz", "/metrics")


def _operation(method: str, path: str, endpoint: Any, op_ids: set[str]) -> dict[str, Any]:
    info = dict(OPERATIONS.get((method, path), {}))
    ok, media, tag = info.pop("ok", 200), info.pop("media", "application/json"), info.pop("tag",
                                                                                          "other")
    op_id = f"{method.lower()}_{endpoint.__name__}"
    while op_id in op_ids:
        op_id += "_"
    op_ids.add(op_id)
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string",
                                                                     "minLength": 1}}
              for n in _PARAM.findall(path)]
    success: dict[str, Any] = {"description": "Success"}
    if ok != 204:
        schema = ({"type": "object", "additionalProperties": True} if media == "application/json"
                  else {"type": "string"})
        success["content"] = {media: {"schema": schema}}
    error = {"description": "An error in Lambda's JSON shape (with a hint when there is one).",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    out: dict[str, Any] = {
        "operationId": op_id, "tags": [tag], "summary": info.pop("summary", endpoint.__name__),
        "parameters": params + info.pop("parameters", []),
        "responses": {str(ok): success, "4XX": error},
    }
    out.update(info)
    if path in ("/healthz",):
        out["security"] = []
    return out


def document(routes: list[Any]) -> dict[str, Any]:
    """The whole document for the given routing table."""
    paths: dict[str, dict[str, Any]] = {}
    op_ids: set[str] = set()
    for route in routes:
        if not isinstance(route, Route) or not documented(route.path_format):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(route.path_format, {})[method.lower()] = _operation(
                method, route.path_format, route.endpoint, op_ids)
    return {
        "openapi": "3.1.0",
        "info": {"title": "dayfly management API", "version": __version__,
                 "description": "dayfly's own endpoints. The Lambda API (/2015-03-31/...) and the "
                                "S3 endpoint follow AWS's documents and are not repeated here."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": {"Error": ERROR}, "securitySchemes": SECURITY},
        "security": [{"token": []}, {}],
    }


async def openapi(request: Request) -> Response:
    app = request.app
    doc = getattr(app.state, "openapi", None)
    if doc is None:
        doc = app.state.openapi = document(app.routes)
    return JSON(doc)


routes = [Route("/openapi.json", openapi, methods=["GET"])]
