"""Aggregates for the dashboard and `dayfly top`, computed from invocation records:

    GET /dayfly/v1/stats[?window=SECONDS]                 every function, plus platform health
                                                          and the cluster (nodes, warm instances
                                                          per node, forwards, queue streams)
    GET /dayfly/v1/functions/{name}/stats[?window=&step=]  one function over time
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..control.isolation import WEAK_TIERS, describe
from ..control.registry import split_name
from ..errors import InvalidParameter
from ..metrics import cluster
from ..numbers import digits
from ..stores.stats import function_stats, overview
from .common import JSON

MAX_WINDOW = 7 * 86400
MAX_POINTS = 500


def _platform(request: Request):
    return request.app.state.platform


def _seconds(request: Request, key: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    if not digits(raw) or not lo <= int(raw) <= hi:
        raise InvalidParameter(f"'{key}' must be a whole number of seconds from {lo} to {hi}")
    return int(raw)


def instances(p: Any, name: str) -> dict[str, int]:
    """Instances of a function now, by state (from the scheduler's memory)."""
    out = {"idle": 0, "busy": 0, "starting": 0}
    for pool in p.scheduler.pools_of(name):
        out["idle"] += len(pool.idle)
        out["busy"] += len(pool.busy)
        out["starting"] += pool.starting
    return out


def _sources(p: Any) -> dict[str, Any]:
    """Table event-source mappings that are not healthy (if the platform has any)."""
    triggers = getattr(p, "triggers", None)
    mappings = getattr(triggers, "mappings", None) or {}
    consumers = getattr(triggers, "consumers", None) or {}
    unhealthy = []
    for uuid, m in mappings.items():
        consumer = consumers.get(uuid)
        health = getattr(consumer, "health", None) if consumer else (
            "disabled" if not getattr(m, "enabled", True) else "stopped")
        if health not in ("healthy", "disabled"):
            unhealthy.append({"uuid": uuid, "function": getattr(m, "function", None),
                              "health": health})
    return {"total": len(mappings), "unhealthy": unhealthy}


async def stats(request: Request) -> Response:
    p = _platform(request)
    window = _seconds(request, "window", 3600, 60, MAX_WINDOW)
    now = time.time()
    await p.records.flush()
    names = sorted(p.registry.functions)
    per_fn = await p.db.run(lambda c: overview(c, names, now - window, window))
    q = await p.queue.summary()
    functions = {}
    for name in names:
        row = per_fn[name]
        st = p.registry.functions.get(name)
        if st is None:  # deleted meanwhile
            continue
        row["instances"] = instances(p, name)
        row["published"] = str(max(st.versions)) if st.versions else None
        row["aliases"] = sorted(st.aliases)
        row["isolation"] = p.registry.isolation(st.latest)
        row["isolation_weak"] = row["isolation"] in WEAK_TIERS
        row["public"] = bool(getattr(st.latest, "public", False))
        functions[name] = row
    oldest = q.oldest_created
    return JSON({"window": window, "now": now, "functions": functions, "platform": {
        "functions": len(p.registry.functions),
        "queue_depth": sum(q.events.values()),
        "oldest_event_age_s": round(now - oldest, 3) if oldest is not None else None,
        "dead_letters": sum(q.dead.values()),
        "dead_letters_by_function": q.dead,
        "sources": _sources(p),
        "isolation": p.default_isolation,
        "isolation_warning": describe(p.default_isolation)["IsolationWarning"],
        "isolation_refused": p.default_isolation in p.refused,  # no --allow-weak-isolation
        "cluster": {"name": p.membership.cluster, "nodes": cluster.nodes(p),
                    "forwarded": cluster.forwarded(p), "streams": cluster.streams(q)},
    }})


async def fn_stats(request: Request) -> Response:
    p = _platform(request)
    name, _ = split_name(request.path_params["name"])
    p.registry.get(name)
    window = _seconds(request, "window", 3600, 60, MAX_WINDOW)
    step = _seconds(request, "step", max(1, window // 60), 1, window)
    if window / step > MAX_POINTS:
        raise InvalidParameter(f"'window' / 'step' must be at most {MAX_POINTS} points")
    now = time.time()
    since = (now // step + 1) * step - window  # points on multiples of step: stable charts
    await p.records.flush()
    out = await p.db.run(lambda c: function_stats(c, name, since, window, step))
    return JSON({"function": name, "window": window, "step": step, "now": now,
                 "instances": instances(p, name), **out})


routes = [
    Route("/dayfly/v1/stats", stats, methods=["GET"]),
    Route("/dayfly/v1/functions/{name}/stats", fn_stats, methods=["GET"]),
]
