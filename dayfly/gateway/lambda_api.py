"""The AWS Lambda management API subset (2015-03-31 and friends), so boto3 and the aws CLI work."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.registry import split_name
from ..errors import InvalidParameter
from ..numbers import digits
from .common import JSON, json_body
from .invoke import invoke


def _platform(request: Request):
    return request.app.state.platform


def _name(request: Request, qualified: bool = False) -> tuple[str, str | None]:
    name, qualifier = split_name(request.path_params["name"], request.query_params.get("Qualifier"))
    if qualifier and not qualified:
        raise InvalidParameter("A qualifier is not allowed for this operation")
    return name, qualifier


def _conf(request: Request, cfg) -> dict:
    p = _platform(request)
    return cfg.to_lambda(p.settings.region, p.registry.isolation(cfg))


async def create_function(request: Request) -> Response:
    cfg = await _platform(request).functions.create(await json_body(request))
    return JSON(_conf(request, cfg), status_code=201)


async def list_functions(request: Request) -> Response:
    p = _platform(request)
    all_versions = request.query_params.get("FunctionVersion") == "ALL"
    configs = []
    for name in sorted(p.registry.functions):
        st = p.registry.functions[name]
        configs.append(st.latest)
        if all_versions:
            configs.extend(st.versions[v] for v in sorted(st.versions))
    marker = request.query_params.get("Marker")
    start = int(marker) if digits(marker) else 0
    max_items = request.query_params.get("MaxItems")
    limit = int(max_items) if digits(max_items) and int(max_items) > 0 else 50
    page = configs[start : start + limit]
    out: dict = {"Functions": [_conf(request, c) for c in page]}
    if start + limit < len(configs):
        out["NextMarker"] = str(start + limit)
    return JSON(out)


async def get_function(request: Request) -> Response:
    p = _platform(request)
    name, qualifier = _name(request, qualified=True)
    cfg = p.registry.config(name, qualifier)
    st = p.registry.get(name)
    base = str(request.base_url).rstrip("/")
    out = {"Configuration": _conf(request, cfg),
           "Code": {"RepositoryType": "S3",
                    "Location": f"{base}/dayfly/v1/bundles/{cfg.code_hex}.zip"},
           "Tags": {}}
    if st.reserved is not None:
        out["Concurrency"] = {"ReservedConcurrentExecutions": st.reserved}
    return JSON(out)


async def get_configuration(request: Request) -> Response:
    name, qualifier = _name(request, qualified=True)
    return JSON(_conf(request, _platform(request).registry.config(name, qualifier)))


async def update_configuration(request: Request) -> Response:
    name, _ = _name(request)
    cfg = await _platform(request).functions.update_config(name, await json_body(request))
    return JSON(_conf(request, cfg))


async def update_code(request: Request) -> Response:
    name, _ = _name(request)
    cfg = await _platform(request).functions.update_code(name, await json_body(request))
    return JSON(_conf(request, cfg))


async def delete_function(request: Request) -> Response:
    name, qualifier = _name(request, qualified=True)
    p = _platform(request)
    await p.functions.delete(name, qualifier)
    if not qualifier:
        await p.event_configs.forget_function(name)
    return Response(status_code=204)


async def publish_version(request: Request) -> Response:
    name, _ = _name(request)
    cfg = await _platform(request).functions.publish(name, await json_body(request))
    return JSON(_conf(request, cfg), status_code=201)


async def list_versions(request: Request) -> Response:
    p = _platform(request)
    name, _ = _name(request)
    st = p.registry.get(name)
    configs = [st.latest] + [st.versions[v] for v in sorted(st.versions)]
    return JSON({"Versions": [_conf(request, c) for c in configs]})


async def create_alias(request: Request) -> Response:
    p = _platform(request)
    name, _ = _name(request)
    alias = await p.functions.create_alias(name, await json_body(request))
    return JSON(alias.to_lambda(p.settings.region), status_code=201)


async def list_aliases(request: Request) -> Response:
    p = _platform(request)
    name, _ = _name(request)
    version = request.query_params.get("FunctionVersion")
    aliases = [a for a in p.registry.get(name).aliases.values()
               if version is None or a.version == version]
    return JSON({"Aliases": [a.to_lambda(p.settings.region) for a in aliases]})


async def get_alias(request: Request) -> Response:
    p = _platform(request)
    name, _ = _name(request)
    alias = p.functions.get_alias(name, request.path_params["alias"])
    return JSON(alias.to_lambda(p.settings.region))


async def update_alias(request: Request) -> Response:
    p = _platform(request)
    name, _ = _name(request)
    alias = await p.functions.update_alias(name, request.path_params["alias"],
                                           await json_body(request))
    return JSON(alias.to_lambda(p.settings.region))


async def delete_alias(request: Request) -> Response:
    p = _platform(request)
    name, _ = _name(request)
    p.functions.get_alias(name, request.path_params["alias"])
    await p.functions.delete_alias(name, request.path_params["alias"])
    return Response(status_code=204)


async def put_concurrency(request: Request) -> Response:
    name, _ = _name(request)
    value = await _platform(request).functions.put_concurrency(name, await json_body(request))
    return JSON({"ReservedConcurrentExecutions": value})


async def get_concurrency(request: Request) -> Response:
    name, _ = _name(request)
    reserved = _platform(request).registry.get(name).reserved
    return JSON({} if reserved is None else {"ReservedConcurrentExecutions": reserved})


async def delete_concurrency(request: Request) -> Response:
    name, _ = _name(request)
    await _platform(request).functions.delete_concurrency(name)
    return Response(status_code=204)


async def invoke_async(request: Request) -> Response:
    """The deprecated InvokeAsync API: same as Invoke with InvocationType Event."""
    p = _platform(request)
    name, qualifier = _name(request, qualified=True)
    p.registry.config(name, qualifier)
    body = await request.body()
    ev_id = await p.queue.put(name, qualifier, body or b"{}", "event")
    return JSON({"Status": 202}, status_code=202, headers={"X-Amzn-RequestId": ev_id})


F = "/2015-03-31/functions"
routes = [
    Route(f"{F}/{{name}}/invocations", invoke, methods=["POST"]),
    Route(F, create_function, methods=["POST"]),
    Route(f"{F}/", create_function, methods=["POST"]),
    Route(F, list_functions, methods=["GET"]),
    Route(f"{F}/", list_functions, methods=["GET"]),
    Route(f"{F}/{{name}}", get_function, methods=["GET"]),
    Route(f"{F}/{{name}}", delete_function, methods=["DELETE"]),
    Route(f"{F}/{{name}}/configuration", get_configuration, methods=["GET"]),
    Route(f"{F}/{{name}}/configuration", update_configuration, methods=["PUT"]),
    Route(f"{F}/{{name}}/code", update_code, methods=["PUT"]),
    Route(f"{F}/{{name}}/versions", publish_version, methods=["POST"]),
    Route(f"{F}/{{name}}/versions", list_versions, methods=["GET"]),
    Route(f"{F}/{{name}}/aliases", create_alias, methods=["POST"]),
    Route(f"{F}/{{name}}/aliases", list_aliases, methods=["GET"]),
    Route(f"{F}/{{name}}/aliases/{{alias}}", get_alias, methods=["GET"]),
    Route(f"{F}/{{name}}/aliases/{{alias}}", update_alias, methods=["PUT"]),
    Route(f"{F}/{{name}}/aliases/{{alias}}", delete_alias, methods=["DELETE"]),
    Route("/2017-10-31/functions/{name}/concurrency", put_concurrency, methods=["PUT"]),
    Route("/2017-10-31/functions/{name}/concurrency", delete_concurrency, methods=["DELETE"]),
    Route("/2019-09-30/functions/{name}/concurrency", get_concurrency, methods=["GET"]),
    Route("/2014-11-13/functions/{name}/invoke-async/", invoke_async, methods=["POST"]),
    Route("/2014-11-13/functions/{name}/invoke-async", invoke_async, methods=["POST"]),
]
