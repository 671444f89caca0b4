"""Asynchronous invocation settings (Lambda's EventInvokeConfig API) and the dead-letter queue."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.registry import split_name
from ..errors import InvalidParameter, ResourceNotFound
from ..numbers import digits
from ..types import LATEST
from .common import JSON, json_body


def _platform(request: Request):
    return request.app.state.platform


def _target(request: Request) -> tuple[str, str]:
    p = _platform(request)
    name, qualifier = split_name(request.path_params["name"], request.query_params.get("Qualifier"))
    p.registry.config(name, qualifier)  # 404 for unknown functions, versions and aliases
    return name, qualifier or LATEST


async def put_config(request: Request) -> Response:
    p = _platform(request)
    name, q = _target(request)
    cfg = await p.event_configs.put(name, q, await json_body(request),
                                    merge=request.method == "POST")
    return JSON(cfg.to_lambda(p.settings.region, name, q))


async def get_config(request: Request) -> Response:
    p = _platform(request)
    name, q = _target(request)
    return JSON(p.event_configs.explicit(name, q).to_lambda(p.settings.region, name, q))


async def delete_config(request: Request) -> Response:
    p = _platform(request)
    name, q = _target(request)
    await p.event_configs.delete(name, q)
    return Response(status_code=204)


async def list_configs(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    p.registry.get(name)
    return JSON({"FunctionEventInvokeConfigs": [
        c.to_lambda(p.settings.region, name, q) for q, c in p.event_configs.of_function(name)]})


def _ids(body: dict) -> list[str] | None:
    ids = body.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidParameter("'ids' must be a list of event ids")
    return ids


async def dlq_list(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    raw = request.query_params.get("limit", "100")
    if not digits(raw) or not 1 <= int(raw) <= 1000:
        raise InvalidParameter("'limit' must be an integer from 1 to 1000")
    return JSON({"dead_letters": await p.queue.dead(name, int(raw))})


async def dlq_show(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    rows = await p.queue.dead(name, 1, request.path_params["event_id"])
    if not rows:
        raise ResourceNotFound(f"No dead letter {request.path_params['event_id']} for {name}")
    return JSON(rows[0])


async def dlq_redrive(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    p.registry.get(name)
    n = await p.queue.redrive(name, _ids(await json_body(request)))
    return JSON({"redriven": n})


async def dlq_purge(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    n = await p.queue.purge(name, _ids(await json_body(request)))
    return JSON({"purged": n})


C = "/2019-09-25/functions/{name}/event-invoke-config"
D = "/dayfly/v1/functions/{name}/dlq"
routes = [
    Route(C, put_config, methods=["PUT", "POST"]),
    Route(C, get_config, methods=["GET"]),
    Route(C, delete_config, methods=["DELETE"]),
    Route(C + "/list", list_configs, methods=["GET"]),
    Route(D, dlq_list, methods=["GET"]),
    Route(D + "/redrive", dlq_redrive, methods=["POST"]),
    Route(D, dlq_purge, methods=["DELETE"]),
    Route(D + "/{event_id}", dlq_show, methods=["GET"]),
]
