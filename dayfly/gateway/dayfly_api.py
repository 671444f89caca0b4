"""dayfly's own endpoints under /dayfly/v1: deploy with progress, instances, records, logs."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import time
import tomllib
import zipfile
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..config import MAX_ZIP
from ..control import unzip
from ..control.registry import NAME_RE, split_name
from ..errors import DayflyError, InvalidParameter, ResourceNotFound
from ..numbers import digits
from ..sandbox.base import InstanceStats
from ..sandbox.safe import Handle, SafeSandbox
from ..stores.records import record_json
from . import builtins_api
from .common import JSON, json_body, read_body

log = logging.getLogger("dayfly.gateway")

_HEX = re.compile(r"^[0-9a-f]{64}$")
_STATUSES = ("success", "error", "timeout", "crash")


def _platform(request: Request):
    return request.app.state.platform


async def healthz(request: Request) -> Response:
    p = _platform(request)
    return JSON({"status": "ok", "version": __version__,
                 "isolation": {"default": p.default_isolation, "available": sorted(p.sandboxes),
                               "weak": [n for n, sb in p.sandboxes.items() if sb.backend.weak],
                               # weak tiers this node was not started to allow
                               "refused": sorted(p.refused)},
                 "functions": len(p.registry.functions)})


def _ndjson(obj: object) -> bytes:
    return orjson.dumps(obj) + b"\n"


async def deploy(request: Request) -> Response:
    """POST /dayfly/v1/functions/{name}/deploy: zip body; create or update; NDJSON progress."""
    p = _platform(request)
    name = request.path_params["name"]
    if not NAME_RE.match(name):
        raise InvalidParameter("Function name must be 1-64 letters, digits, '-' or '_'")
    data = await read_body(request, MAX_ZIP, "deploy")
    return _deploy_zip(p, name, data, request.query_params.get("publish") == "1")


async def deploy_builtin(request: Request) -> Response:
    """POST /dayfly/v1/builtins/{builtin}/deploy: a builtin, configured; NDJSON like deploy."""
    name, data, publish, extra = await builtins_api.builtin_bundle(request)
    return _deploy_zip(_platform(request), name, data, publish, extra)


def _deploy_zip(p, name: str, data: bytes, publish: bool,
                extra: dict | None = None) -> StreamingResponse:
    """Create or update `name` from zip bytes, streaming progress, then the result (+ extra)."""
    params = {"FunctionName": name, "ZipFile": base64.b64encode(data).decode(),
              "Publish": publish}
    lines: asyncio.Queue = asyncio.Queue()
    before = p.registry.functions.get(name)
    previous = (before.latest.to_lambda(p.settings.region, p.registry.isolation(before.latest))
                if before is not None else None)

    async def run():
        if name in p.registry.functions:
            return await p.functions.update_code(name, params, lines.put_nowait)
        create = {**params, "Code": {"ZipFile": params["ZipFile"]}}
        if "handler" not in (await _manifest_handler(data)):
            create["Handler"] = "handler.handler"
        return await p.functions.create(create, lines.put_nowait)

    task = asyncio.ensure_future(run())

    async def stream() -> AsyncIterator[bytes]:
        while not task.done() or not lines.empty():
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield _ndjson({"progress": getter.result()})
            else:
                getter.cancel()
        exc = task.exception()
        if isinstance(exc, DayflyError):
            yield _ndjson({"error": {"code": exc.code, "message": exc.message,
                                     "status": exc.status}})
        elif exc is not None:  # its text may name paths on this machine: the log gets it
            log.error("deploy of %s failed", name, exc_info=exc)
            yield _ndjson({"error": {"code": "ServiceException", "status": 500,
                                     "message": f"internal error ({type(exc).__name__}); the "
                                                "node's log has the details"}})
        else:
            cfg = task.result()
            yield _ndjson({"function": cfg.to_lambda(p.settings.region, p.registry.isolation(cfg)),
                           "previous": previous, **(extra or {})})

    return StreamingResponse(stream(), media_type="application/x-ndjson")


async def _manifest_handler(data: bytes) -> str:
    """'handler' if the zip's dayfly.toml names a handler, else ''."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            text = zf.read("dayfly.toml").decode()
        return "handler" if "handler" in tomllib.loads(text) else ""
    except (KeyError, tomllib.TOMLDecodeError, UnicodeDecodeError, *unzip.READ_ERRORS):
        return ""  # a damaged zip is refused, with the reason, when the bundle is stored


async def list_instances(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    p.registry.get(name)
    out = []
    for pool in p.scheduler.pools_of(name):
        handles = pool.handles()
        # /proc reads, a fraction of a millisecond each: thousands of instances (issue 18,
        # density) would hold the event loop for seconds
        every = await asyncio.to_thread(_stats, pool.sandbox, [h for h, _ in handles])
        for (h, state), stats in zip(handles, every, strict=True):
            out.append({"id": h.id, "pid": h.inst.pid, "state": state,
                        "version": pool.spec.version, "isolation": pool.sandbox.name,
                        "isolation_weak": pool.sandbox.backend.weak,
                        "invocations": h.invocations, "idle_s": round(time.monotonic() - h.last_used, 3),
                        "pss_kb": stats.pss_kb, "rss_kb": stats.rss_kb,
                        "draining": pool.draining, "running": int(h.busy)})
        if pool.starting:
            out.extend({"id": None, "pid": None, "state": "starting",
                        "version": pool.spec.version} for _ in range(pool.starting))
    return JSON({"instances": out})


def _stats(sandbox: SafeSandbox, handles: list[Handle]) -> list[InstanceStats]:
    return [sandbox.stats(h) for h in handles]


async def stop_instances(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    p.registry.get(name)
    await p.scheduler.scale_to_zero(name)
    return Response(status_code=204)


def _int_param(request: Request, key: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    if not digits(raw) or not lo <= int(raw) <= hi:
        raise InvalidParameter(f"'{key}' must be an integer from {lo} to {hi}")
    return int(raw)


def _float_param(request: Request, key: str) -> float | None:
    raw = request.query_params.get(key)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidParameter(f"'{key}' must be a number (epoch seconds)") from None


async def list_invocations(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    p.registry.get(name)
    status = request.query_params.get("status")
    if status is not None and status not in _STATUSES:
        raise InvalidParameter(f"'status' must be one of {', '.join(_STATUSES)}")
    rows = await p.records.query(name, limit=_int_param(request, "limit", 50, 1, 1000),
                                 status=status, since=_float_param(request, "since"))
    return JSON({"invocations": rows})


async def get_invocation(request: Request) -> Response:
    p = _platform(request)
    rows = await p.records.query(request_id=request.path_params["request_id"], limit=1)
    if not rows:
        raise ResourceNotFound(f"No invocation {request.path_params['request_id']}")
    return JSON(rows[0])


async def logs(request: Request) -> Response:
    """GET /dayfly/v1/functions/{name}/logs: NDJSON, oldest first; follow=1 keeps streaming."""
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    p.registry.get(name)
    limit = _int_param(request, "limit", 20, 1, 1000)
    since = _float_param(request, "since")
    follow = request.query_params.get("follow") in ("1", "true")
    queue = p.records.subscribe() if follow else None
    rows = await p.records.query(name, limit=limit, since=since)

    def line(r: dict) -> bytes:
        return _ndjson({"request_id": r["request_id"], "start": r["start"],
                        "version": r["version"], "status": r["status"], "node": r.get("node") or "",
                        "text": r["logs"]})

    async def stream() -> AsyncIterator[bytes]:
        seen = {r["request_id"] for r in rows}
        try:
            for r in reversed(rows):
                yield line(r)
            if queue is None:
                return
            while True:
                try:
                    rec = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield b"\n"  # keep-alive, so dead clients are noticed
                    continue
                if rec is None:  # the platform is stopping
                    return
                if rec.function == name and rec.request_id not in seen:
                    yield line(record_json(rec))
        finally:
            if queue is not None:
                p.records.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="application/x-ndjson")


async def doctor(request: Request) -> Response:
    from ..platform import tier_report

    p = _platform(request)
    return JSON({"tiers": tier_report(), "default": p.default_isolation})


async def put_secret(request: Request) -> Response:
    body = await json_body(request, 64 * 1024)
    await _platform(request).registry.secrets.set(request.path_params["name"], body.get("value"))
    return Response(status_code=204)


async def list_secrets(request: Request) -> Response:
    store = _platform(request).registry.secrets
    users: dict[str, list[str]] = {}
    for fname, st in _platform(request).registry.functions.items():
        for s in st.latest.secrets:
            users.setdefault(s, []).append(fname)
    return JSON({"secrets": [{"name": n, "updated": store.updated[n], "functions": users.get(n, [])}
                             for n in sorted(store.values)]})


async def delete_secret(request: Request) -> Response:
    await _platform(request).registry.secrets.delete(request.path_params["name"])
    return Response(status_code=204)


async def bundle(request: Request) -> Response:
    p = _platform(request)
    digest = request.path_params["digest"]
    # a bundle deployed through another node is fetched from the shared store first
    b = p.bundles.get(digest) if _HEX.match(digest) and await p.bundles.ensure(digest) else None
    if b is None:
        raise ResourceNotFound(f"No code bundle {digest}")
    return FileResponse(b.zip_path, media_type="application/zip")


D = "/dayfly/v1"
routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route(f"{D}/functions/{{name}}/deploy", deploy, methods=["POST"]),
    Route(f"{D}/builtins", builtins_api.list_builtins, methods=["GET"]),
    Route(f"{D}/builtins/{{builtin}}/deploy", deploy_builtin, methods=["POST"]),
    Route(f"{D}/functions/{{name}}/instances", list_instances, methods=["GET"]),
    Route(f"{D}/functions/{{name}}/instances", stop_instances, methods=["DELETE"]),
    Route(f"{D}/functions/{{name}}/invocations", list_invocations, methods=["GET"]),
    Route(f"{D}/functions/{{name}}/logs", logs, methods=["GET"]),
    Route(f"{D}/invocations/{{request_id}}", get_invocation, methods=["GET"]),
    Route(f"{D}/bundles/{{digest}}.zip", bundle, methods=["GET"]),
    Route(f"{D}/doctor", doctor, methods=["GET"]),
    Route(f"{D}/secrets", list_secrets, methods=["GET"]),
    Route(f"{D}/secrets/{{name}}", put_secret, methods=["PUT"]),
    Route(f"{D}/secrets/{{name}}", delete_secret, methods=["DELETE"]),
]
