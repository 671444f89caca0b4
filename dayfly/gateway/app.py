"""The ASGI application: routes, error handlers, and the platform's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect

from ..errors import DayflyError
from ..metrics.s3 import CountS3
from ..platform import Platform
from . import (
    async_api,
    bucket_triggers_api,
    buckets_api,
    dayfly_api,
    esm_api,
    function_urls,
    ingest_api,
    keys_api,
    lambda_api,
    layers_api,
    metrics_api,
    nodes_api,
    openapi,
    provisioned_api,
    routes_api,
    schedules_api,
    stats_api,
    tokens_api,
    ui,
)
from .common import on_client_gone, on_dayfly_error, on_http_error, on_unexpected
from .request_ids import RequestIds
from .s3.dispatch import S3Dispatch
from .s3.routes import S3App


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
        routes=[*lambda_api.routes, *layers_api.routes, *provisioned_api.routes,
                *dayfly_api.routes, *keys_api.routes, *async_api.routes,
                *esm_api.routes, *function_urls.routes, *schedules_api.routes, *ingest_api.routes,
                *bucket_triggers_api.routes,
                *stats_api.routes, *buckets_api.routes, *tokens_api.routes, *metrics_api.routes,
                *nodes_api.routes, *routes_api.routes, *openapi.routes, *ui.routes],
        middleware=[Middleware(S3Dispatch, s3=CountS3(S3App(
            platform.objects, platform.keys, platform.registry.function_keys.scope,
            platform.bucket_triggers, platform.access), platform.metrics),
                               function_s3=platform.settings.function_s3),
                    Middleware(RequestIds)],
        exception_handlers={DayflyError: on_dayfly_error, HTTPException: on_http_error,
                            ClientDisconnect: on_client_gone,
                            Exception: on_unexpected},
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
