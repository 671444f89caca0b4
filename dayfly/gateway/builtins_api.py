"""The builtins as an API: their catalog, and a validated configuration turned into a bundle.

    GET  /dayfly/v1/builtins                    → {"builtins": [{name, summary, events, options}]}
    POST /dayfly/v1/builtins/{builtin}/deploy   {"name", "config"?, "publish"?, "trigger"?} →
                                                  NDJSON like a folder deploy
                                                  (dayfly_api.deploy_builtin)

With "trigger": true the caller will wire the builtin to its source bucket after the deploy,
so that bucket is checked here too: a deploy that would be refused is refused before anything
is stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..builtins import catalog
from ..control.notifications import LOCAL
from ..control.registry import NAME_RE
from ..errors import InvalidParameter
from .bucket_triggers_api import check_bucket
from .common import JSON, json_body


async def list_builtins(request: Request) -> Response:
    return JSON({"builtins": [b.to_json() for b in catalog.BUILTINS.values()]})


async def builtin_bundle(request: Request) -> tuple[str, bytes, bool, dict[str, Any]]:
    """(function name, zip, publish, what the final progress line reports) for a deploy."""
    body = await json_body(request, 1024 * 1024)
    builtin = catalog.get(request.path_params["builtin"])
    name = body.get("name") or builtin.name
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidParameter("Function name must be 1-64 letters, digits, '-' or '_'")
    data, prepared = await asyncio.to_thread(catalog.package, builtin.name, body.get("config"))
    if body.get("trigger"):
        if not prepared.trigger:
            raise InvalidParameter(f"builtin:{builtin.name} has no bucket source to wire",
                                   hint=f"deploy without --trigger and wire it with `dayfly "
                                        f"trigger add {name} --bucket B` (or --table)")
        await check_bucket(request.app.state.platform, LOCAL, prepared.trigger["bucket"])
    info = {"name": builtin.name, "config": prepared.config, "trigger": prepared.trigger}
    return name, data, bool(body.get("publish")), {"builtin": info}
