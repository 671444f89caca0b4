"""What `/metrics` shows: the observer's counters plus state read when scraped (instances,
queues, dead letters, event sources, sandbox starts)."""

from __future__ import annotations

import time
from typing import Any

from .. import __version__
from .cluster import expose as expose_cluster
from .observer import Metrics
from .text import Exposition

_FV = ("function", "version")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(names, values, strict=True))


def _instances(platform: Any) -> list[tuple[dict[str, str], float]]:
    counts: dict[tuple[str, str, str, str], int] = {}
    sched = platform.scheduler
    pools = [(p, False) for p in sched.current.values()] + [(p, True) for p in sched.draining]
    for pool, draining in pools:
        base = (pool.spec.name, pool.spec.version, pool.sandbox.name)
        for state, n in (("idle", len(pool.idle)), ("busy", len(pool.busy)),
                         ("starting", pool.starting)):
            key = (*base, "draining" if draining and state != "starting" else state)
            counts[key] = counts.get(key, 0) + n
    names = ("function", "version", "isolation", "state")
    return [(_labels(names, k), v) for k, v in sorted(counts.items())]


def _queued(platform: Any) -> list[tuple[dict[str, str], float]]:
    counts: dict[tuple[str, str], int] = {}
    sched = platform.scheduler
    for pool in [*sched.current.values(), *sched.draining]:
        key = (pool.spec.name, pool.spec.version)
        counts[key] = counts.get(key, 0) + sum(not f.done() for f in pool.waiters)
    return [(_labels(_FV, k), v) for k, v in sorted(counts.items())]


def _event_sources(platform: Any) -> tuple[list, list]:
    """(health samples, lag samples) of table event-source mappings, if there are any."""
    triggers = getattr(platform, "triggers", None)
    health, lag = [], []
    for uuid, m in sorted((getattr(triggers, "mappings", None) or {}).items()):
        consumer = (getattr(triggers, "consumers", None) or {}).get(uuid)
        state = getattr(consumer, "health", "stopped") if consumer else "stopped"
        labels = {"uuid": uuid, "function": getattr(m, "function", "")}
        health.append((labels, 1 if state == "healthy" else 0))
        behind = getattr(consumer, "lag", None)
        if isinstance(behind, int | float):
            lag.append((labels, behind))
    return health, lag


async def render(platform: Any) -> str:
    """The whole exposition; the only I/O is one read of the queue tables."""
    m: Metrics = platform.metrics
    out = Exposition()
    out.simple("dayfly_build_info", "gauge", "dayfly's version.", [({"version": __version__}, 1)])
    out.simple("dayfly_functions", "gauge", "Functions deployed.",
               [({}, len(platform.registry.functions))])
    out.simple("dayfly_invocations_total", "counter",
               "Finished invocations by function, version and status.",
               [(_labels((*_FV, "status"), k), v) for k, v in sorted(m.invocations.items())])
    out.histogram("dayfly_invocation_duration_seconds", "Handler duration of invocations.",
                  [(_labels(_FV, k), h) for k, h in sorted(m.durations.items())])
    out.simple("dayfly_cold_starts_total", "counter",
               "Invocations that started a new instance.",
               [(_labels(_FV, k), v) for k, v in sorted(m.cold_starts.items())])
    out.histogram("dayfly_init_duration_seconds",
                  "Instance start (fork and init) of cold invocations.",
                  [(_labels(_FV, k), h) for k, h in sorted(m.init_durations.items())])
    out.simple("dayfly_throttles_total", "counter",
               "Invocation requests throttled (no concurrency left): a caller's 429, or a queued "
               "event or stream batch the first time it had to wait.",
               [(_labels(_FV, k), v) for k, v in sorted(m.throttles.items())])
    out.simple("dayfly_throttle_retries_total", "counter",
               "Later tries of throttled queued events and stream batches, refused again.",
               [(_labels(_FV, k), v) for k, v in sorted(m.throttle_retries.items())])
    out.simple("dayfly_forwarded_invocations_total", "counter",
               "Sync invokes this node had no room for and forwarded to another node, by peer "
               "and outcome (ok, function_error, throttled, http_<status>, failed; unreachable "
               "or not_found: run here instead).",
               [({"peer": p, "outcome": o}, n) for (p, o), n in sorted(m.forwards.items())])
    out.simple("dayfly_concurrency_share_nodes", "gauge",
               "Live nodes each concurrency limit is shared among (this node enforces its share).",
               [({}, platform.scheduler.share.nodes)])
    out.simple("dayfly_instances", "gauge", "Instances by state (idle, busy, starting, draining).",
               _instances(platform))
    out.simple("dayfly_queued_invocations", "gauge",
               "Invocations waiting for a busy function's instance (at most --max-queue each).",
               _queued(platform))
    out.simple("dayfly_sandbox_starts_total", "counter",
               "Instance starts by isolation tier and result (ok, init_error, error).",
               [({"isolation": name, "result": r}, n)
                for name, sb in sorted(platform.sandboxes.items())
                for r, n in getattr(sb, "starts", {}).items()])
    q = await platform.queue.summary()
    now = time.time()
    out.simple("dayfly_async_queue_depth", "gauge", "Queued asynchronous events by function.",
               [({"function": f}, n) for f, n in q.events.items()])
    oldest = q.oldest_created
    out.simple("dayfly_async_queue_oldest_age_seconds", "gauge",
               "Age of the oldest queued asynchronous event (0 when the queue is empty).",
               [({}, round(now - oldest, 3) if oldest is not None else 0)])
    out.simple("dayfly_dead_letters", "gauge", "Events in the dead-letter queue by function.",
               [({"function": f}, n) for f, n in q.dead.items()])
    health, lag = _event_sources(platform)
    out.simple("dayfly_event_source_healthy", "gauge",
               "1 if a table event-source mapping is reading its change log, else 0.", health)
    if lag:
        out.simple("dayfly_event_source_lag_records", "gauge",
                   "Change-log records not yet delivered, by mapping.", lag)
    out.simple("dayfly_s3_requests_total", "counter",
               "Requests to the S3 endpoint by operation and HTTP status.",
               [({"operation": op, "status": st}, n) for (op, st), n in sorted(m.s3_requests.items())])
    out.simple("dayfly_http_requests_total", "counter",
               "Requests answered by HTTP routes and function URLs, by function, route and "
               "status (preflights, refusals and limits included).",
               [({"function": f, "route": r, "status": st}, n)
                for (f, r, st), n in sorted(m.http_requests.items())])
    out.simple("dayfly_invocation_records_pending", "gauge",
               "Invocation records waiting to be written.", [({}, len(platform.records.pending))])
    expose_cluster(out, platform, q)
    return out.render()
