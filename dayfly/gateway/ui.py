"""The dashboard's static files at /ui/ (and / redirects there)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..dashboard import STATIC


async def home(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


routes = [
    Route("/", home, methods=["GET"]),
    Mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui"),
]
