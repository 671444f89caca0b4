"""External object stores under /dayfly/v1/ingest: their sources (a bearer token each) and the
webhook they post S3 event notifications to, routed through the bucket triggers.

    POST   /dayfly/v1/ingest/sources          {"name", "description"} → 201, the token once
    GET    /dayfly/v1/ingest/sources          names, never tokens
    DELETE /dayfly/v1/ingest/sources/{name}   and its bucket triggers
    POST   /dayfly/v1/ingest/s3/{source}      Authorization: Bearer TOKEN; AWS or MinIO body
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import MAX_PAYLOAD
from ..control.ingest_sources import TOKEN_PREFIX
from ..errors import Unauthorized
from ..triggers.webhook import records_of
from .common import JSON, json_body

P = "/dayfly/v1/ingest"


def _platform(request: Request):
    return request.app.state.platform


async def create_source(request: Request) -> Response:
    body = await json_body(request, 64 * 1024)
    out = await _platform(request).ingest_sources.create(body.get("name"),
                                                         body.get("description", ""))
    out["url"] = f"{P}/s3/{out['name']}"
    return JSON(out, status_code=201)


async def list_sources(request: Request) -> Response:
    return JSON({"sources": _platform(request).ingest_sources.list()})


async def delete_source(request: Request) -> Response:
    p = _platform(request)
    name = request.path_params["name"]
    await p.ingest_sources.delete(name)
    await p.bucket_triggers.notifications.forget(name)
    return Response(status_code=204)


async def ingest(request: Request) -> Response:
    """Accept a webhook's records; every matching event is queued durably before the 200."""
    p = _platform(request)
    source = request.path_params["source"]
    header = request.headers.get("authorization", "").strip()
    scheme, _, token = header.partition(" ")
    if header.startswith(TOKEN_PREFIX):  # older MinIO sends its auth_token without a scheme
        scheme, token = "bearer", header
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an ingest request needs `Authorization: Bearer TOKEN` (the token "
                           "`dayfly ingest add-source` printed)")
    if not p.ingest_sources.check_token(source, token.strip()):
        raise Unauthorized(f"wrong token for ingest source {source!r}, or no such source",
                           hint="`dayfly ingest ls` lists the sources")
    records = records_of(await json_body(request, MAX_PAYLOAD),
                         request.client.host if request.client else "127.0.0.1")
    routed, queued = await p.bucket_triggers.ingest(source, records)
    return JSON({"records": len(records), "routed": routed, "queued": queued})


routes = [
    Route(f"{P}/sources", create_source, methods=["POST"]),
    Route(f"{P}/sources", list_sources, methods=["GET"]),
    Route(f"{P}/sources/{{name}}", delete_source, methods=["DELETE"]),
    Route(f"{P}/s3/{{source}}", ingest, methods=["POST"]),
]
