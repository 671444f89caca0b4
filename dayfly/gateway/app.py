"""The ASGI application: routes, error handlers, and the platform's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from ..errors import DayflyError
from ..platform import Platform
from . import dayfly_api, lambda_api
from .common import on_dayfly_error, on_http_error, on_unexpected


def build_app(platform: Platform,
              on_started: Callable[[Platform], Awaitable[None]] | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await platform.start()
        if on_started is not None:
            await on_started(platform)
        try:
            yield
        finally:
            await platform.stop()

    app = Starlette(
        routes=[*lambda_api.routes, *dayfly_api.routes],
        exception_handlers={DayflyError: on_dayfly_error, HTTPException: on_http_error,
                            Exception: on_unexpected},
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
