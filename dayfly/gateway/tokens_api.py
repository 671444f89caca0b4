"""API tokens under /dayfly/v1/tokens: create (the token is shown once), list, revoke."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import JSON, json_body


def _tokens(request: Request):
    return request.app.state.platform.tokens


async def create_token(request: Request) -> Response:
    body = await json_body(request, limit=64 * 1024)
    return JSON(await _tokens(request).create(body.get("description", "")), status_code=201)


async def list_tokens(request: Request) -> Response:
    return JSON({"tokens": _tokens(request).list()})


async def revoke_token(request: Request) -> Response:
    await _tokens(request).revoke(request.path_params["token_id"])
    return Response(status_code=204)


routes = [
    Route("/dayfly/v1/tokens", create_token, methods=["POST"]),
    Route("/dayfly/v1/tokens", list_tokens, methods=["GET"]),
    Route("/dayfly/v1/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
