"""`GET /metrics`: Prometheus' text format (see dayfly/metrics/)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..metrics.collect import render
from ..metrics.text import CONTENT_TYPE


async def metrics(request: Request) -> Response:
    text = await render(request.app.state.platform)
    return Response(text, headers={"content-type": CONTENT_TYPE})


routes = [Route("/metrics", metrics, methods=["GET"])]
