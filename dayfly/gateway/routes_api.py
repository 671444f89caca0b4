"""GET /dayfly/v1/routes: every HTTP route and function URL the node serves, for `dayfly routes`
and the dashboard (from the registry's memory, as the request path sees it)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import JSON
from .origin import host_name
from .routes_table import Table, url_id


def describe(request: Request, function: str | None = None) -> dict[str, Any]:
    """Routes (key, function, auth, payload version, limits, CORS) and URLs (host and path)."""
    registry = request.app.state.platform.registry
    functions = registry.functions if function is None else {
        function: registry.get(function)}
    table = Table.build(functions)
    authority = request.headers.get("host", "")
    host = host_name(authority)
    port = authority.rsplit(":", 1)[1] if ":" in authority.rsplit("]", 1)[-1] else ""
    base = "localhost" if not host or host.replace(".", "").isdigit() or ":" in host else host
    scheme = request.url.scheme
    routes: list[dict[str, Any]] = []
    urls: list[dict[str, Any]] = []
    for e in table.entries:
        if e.kind == "route":
            routes.append({"route": e.key, "function": e.function, "auth": e.auth,
                           "payload_version": e.payload_version, "max_body": e.max_body,
                           "rate_limit": e.rate, "cors": e.cors is not None,
                           "stage": e.stage})
        else:
            uid = url_id(e.function, e.qualifier)
            urls.append({"function": e.function, "qualifier": e.qualifier,
                         "auth_type": e.url_auth, "cors": e.cors is not None,
                         "url": f"{scheme}://{uid.lower()}.{base}"
                                f"{':' + port if port else ''}/",
                         "path_url": f"{scheme}://{authority}/url/{uid}/"})
    routes.sort(key=lambda r: (r["route"] == "$default", r["route"].split(" ", 1)[-1],
                               r["route"]))
    return {"routes": routes, "urls": urls, "conflicts": table.conflicts}


async def list_routes(request: Request) -> Response:
    return JSON(describe(request, request.query_params.get("function")))


routes = [Route("/dayfly/v1/routes", list_routes, methods=["GET"])]
