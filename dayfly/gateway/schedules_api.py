"""dayfly's schedule endpoints under /dayfly/v1/schedules: cron and rate triggers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.registry import split_name
from .common import JSON, json_body


def _triggers(request: Request):
    return request.app.state.platform.triggers


async def create(request: Request) -> Response:
    t = _triggers(request)
    s = await t.create_schedule(await json_body(request, 64 * 1024))
    return JSON(t.schedule_json(s), status_code=201)


async def list_schedules(request: Request) -> Response:
    t = _triggers(request)
    fn = request.query_params.get("FunctionName")
    name = split_name(fn)[0] if fn else None
    return JSON({"Schedules": [t.schedule_json(s) for s in sorted(
        t.schedules.values(), key=lambda s: s.created) if name in (None, s.function)]})


async def get(request: Request) -> Response:
    t = _triggers(request)
    return JSON(t.schedule_json(t.get_schedule(request.path_params["id"])))


async def update(request: Request) -> Response:
    t = _triggers(request)
    s = await t.update_schedule(request.path_params["id"], await json_body(request, 64 * 1024))
    return JSON(t.schedule_json(s))


async def delete(request: Request) -> Response:
    await _triggers(request).delete_schedule(request.path_params["id"])
    return Response(status_code=204)


S = "/dayfly/v1/schedules"
routes = [
    Route(S, create, methods=["POST"]),
    Route(S, list_schedules, methods=["GET"]),
    Route(f"{S}/{{id}}", get, methods=["GET"]),
    Route(f"{S}/{{id}}", update, methods=["PUT"]),
    Route(f"{S}/{{id}}", delete, methods=["DELETE"]),
]
