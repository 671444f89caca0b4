"""S3 access keys under /dayfly/v1/keys: create (the secret is shown once; `user` names the user
it belongs to), list, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.keys import DEFAULT_USER
from .common import JSON, json_body


def _keys(request: Request):
    return request.app.state.platform.keys


async def create_key(request: Request) -> Response:
    body = await json_body(request, limit=64 * 1024)
    key = await _keys(request).create(body.get("description", ""),
                                      body.get("user", DEFAULT_USER))
    # the region S3 clients sign for, so `dayfly keys create --env/--profile` can say it
    key["user"] = key.pop("owner")
    return JSON({**key, "region": request.app.state.platform.settings.region}, status_code=201)


async def list_keys(request: Request) -> Response:
    return JSON({"keys": _keys(request).list()})


async def delete_key(request: Request) -> Response:
    await _keys(request).delete(request.path_params["key_id"])
    return Response(status_code=204)


routes = [
    Route("/dayfly/v1/keys", create_key, methods=["POST"]),
    Route("/dayfly/v1/keys", list_keys, methods=["GET"]),
    Route("/dayfly/v1/keys/{key_id}", delete_key, methods=["DELETE"]),
]
