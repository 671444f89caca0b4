"""The built-in object store as JSON for the dashboard (the S3 endpoint needs SigV4):

    GET    /dayfly/v1/buckets                            names and creation times
    POST   /dayfly/v1/buckets                            {"name"} → 201
    GET    /dayfly/v1/buckets/{bucket}/objects           ?prefix=&delimiter=&after=&limit=
    GET    /dayfly/v1/buckets/{bucket}/objects/{key}     the content (a download)
    PUT    /dayfly/v1/buckets/{bucket}/objects/{key}     raw body, Content-Type kept → 201
    DELETE /dayfly/v1/buckets/{bucket}/objects/{key}     → 204

Changes made here notify bucket triggers like the same changes made through S3.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import InvalidParameter
from ..numbers import digits
from ..stores import sse
from ..stores.objects import Origin
from .common import JSON, json_body

P = "/dayfly/v1/buckets"


def _store(request: Request):
    return request.app.state.platform.objects


def _origin(request: Request) -> Origin:
    return Origin(source_ip=(request.client.host if request.client else ""),
                  principal="dayfly-dashboard")


async def list_buckets(request: Request) -> Response:
    rows = await _store(request).list_buckets()
    return JSON({"buckets": [{"name": n, "created": c} for n, c in rows]})


async def create_bucket(request: Request) -> Response:
    name = (await json_body(request, 4096)).get("name")
    if not isinstance(name, str):
        raise InvalidParameter("'name' (the bucket's name) is required")
    await _store(request).create_bucket(name)
    return JSON({"name": name}, status_code=201)


async def list_objects(request: Request) -> Response:
    q = request.query_params
    limit = q.get("limit", "1000")
    if not digits(limit) or not 1 <= int(limit) <= 1000:
        raise InvalidParameter("'limit' must be an integer from 1 to 1000")
    after = q.get("after", "")
    page = await _store(request).list_objects(
        request.path_params["bucket"], prefix=q.get("prefix", ""),
        delimiter=q.get("delimiter", ""), start=after, inclusive=not after,
        max_keys=int(limit))
    objects = [{"key": r["key"], "size": r["size"], "etag": r["etag"], "modified": r["modified"]}
               for r in page.rows]
    return JSON({"objects": objects, "prefixes": page.prefixes, "truncated": page.truncated,
                 "after": page.last if page.truncated else None})


async def get_object(request: Request) -> Response:
    store = _store(request)
    info = await store.get_object(request.path_params["bucket"], request.path_params["key"])
    key = sse.object_key(info.headers, store.sse_key or b"", None)  # SSE-C: refused
    body = await store.blobs.open(info.blob)
    if key is not None:
        body = sse.decrypting(body, key, sse.nonce_of(info.headers), 0)
    name = info.key.rsplit("/", 1)[-1] or "object"
    return StreamingResponse(body, media_type=info.headers.get("content-type",
                                                               "application/octet-stream"),
                             headers={"content-length": str(info.size), "etag": f'"{info.etag}"',
                                      "content-disposition":
                                          f"attachment; filename*=UTF-8''{quote(name)}"})


async def put_object(request: Request) -> Response:
    headers = {}
    if request.headers.get("content-type"):
        headers["content-type"] = request.headers["content-type"][:256]
    info = await _store(request).put_object(
        request.path_params["bucket"], request.path_params["key"], request.stream(),
        headers=headers, origin=_origin(request))
    return JSON({"key": info.key, "size": info.size, "etag": info.etag}, status_code=201)


async def delete_object(request: Request) -> Response:
    await _store(request).delete_objects(request.path_params["bucket"],
                                         [request.path_params["key"]], _origin(request))
    return Response(status_code=204)


routes = [
    Route(P, list_buckets, methods=["GET"]),
    Route(P, create_bucket, methods=["POST"]),
    Route(P + "/{bucket}/objects", list_objects, methods=["GET"]),
    Route(P + "/{bucket}/objects/{key:path}", get_object, methods=["GET"]),
    Route(P + "/{bucket}/objects/{key:path}", put_object, methods=["PUT"]),
    Route(P + "/{bucket}/objects/{key:path}", delete_object, methods=["DELETE"]),
]
