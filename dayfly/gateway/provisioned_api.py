"""Lambda's provisioned concurrency API (2019-09-30): put, get, delete and list configs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.provisioned import Provisioning
from ..control.registry import split_name
from .common import JSON, json_body

P = "/2019-09-30/functions/{name}/provisioned-concurrency"


def _target(request: Request) -> tuple[Provisioning, str, str | None]:
    name, qualifier = split_name(request.path_params["name"],
                                 request.query_params.get("Qualifier"))
    return Provisioning(request.app.state.platform.functions), name, qualifier


async def put(request: Request) -> Response:
    prov, name, qualifier = _target(request)
    return JSON(await prov.put(name, qualifier, await json_body(request)), status_code=202)


async def get(request: Request) -> Response:
    prov, name, qualifier = _target(request)
    if request.query_params.get("List") == "ALL":  # ListProvisionedConcurrencyConfigs
        return JSON({"ProvisionedConcurrencyConfigs": prov.list(name)})
    return JSON(prov.get(name, qualifier))


async def delete(request: Request) -> Response:
    prov, name, qualifier = _target(request)
    await prov.delete(name, qualifier)
    return Response(status_code=204)


routes = [
    Route(P, put, methods=["PUT"]),
    Route(P, get, methods=["GET"]),
    Route(P, delete, methods=["DELETE"]),
]
