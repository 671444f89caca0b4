"""The scheduler: the only owner of pools. The control plane tells it about deploys; it never
reads the database, so a warm invocation touches neither database nor disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from ..background import spawn
from ..errors import ClientGone, InvalidParameter, TooManyRequests
from ..sandbox.safe import Handle, InitFailed, NotDelivered, SafeSandbox
from ..types import FunctionSpec, InvokeRequest, InvokeResult
from .hooks import Observer
from .pool import Pool, new_instance_id
from .share import Share

log = logging.getLogger("dayfly.scheduler")


class Scheduler:
    """Pools by (function, version); old revisions drain when a new one is deployed."""

    def __init__(self, sandboxes: dict[str, SafeSandbox], observers: list[Observer] | None = None,
                 *, max_queue: int = 256, queue_timeout_s: float = 10.0,
                 reap_interval_s: float = 1.0) -> None:
        self.sandboxes = sandboxes
        self.observers = observers or []
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.reap_interval_s = reap_interval_s
        self.current: dict[tuple[str, str], Pool] = {}
        self.draining: list[Pool] = []
        self.share = Share()  # this node's part of every concurrency limit (one node: all of it)
        self._reaper: asyncio.Task | None = None

    def start(self) -> None:
        self._reaper = asyncio.ensure_future(self._reap_loop())

    def sandbox(self, spec: FunctionSpec) -> SafeSandbox:
        sb = self.sandboxes.get(spec.isolation)
        if sb is None:
            raise InvalidParameter(f"isolation tier '{spec.isolation}' is not available here "
                                   f"(available: {', '.join(sorted(self.sandboxes))})")
        return sb

    def pool(self, spec: FunctionSpec) -> Pool:
        """The pool serving this spec, replacing (and draining) one of an older revision."""
        key = (spec.name, spec.version)
        pool = self.current.get(key)
        if pool is not None and pool.spec.revision == spec.revision:
            return pool
        new = Pool(spec, self.sandbox(spec), max_queue=self.max_queue,
                   queue_timeout_s=self.queue_timeout_s,
                   max_instances=self.share.of(spec.max_instances))
        self.current[key] = new
        if pool is not None:
            self._retire(pool)
        new.ensure_warm()
        return new

    def _retire(self, pool: Pool) -> None:
        self.draining.append(pool)
        spawn(pool.drain())

    def reshare(self, share: Share) -> None:
        """The live nodes changed: every pool's limit becomes this node's new share of it."""
        if share == self.share:
            return
        self.share = share
        for pool in self.current.values():
            pool.resize(share.of(pool.spec.max_instances))

    def has_room(self, spec: FunctionSpec) -> bool:
        """Whether an invocation of `spec` would run here now (an idle instance, or room to
        start one) rather than wait for one. Memory only: decides forwarding (cluster/forward.py)."""
        pool = self.current.get((spec.name, spec.version))
        if pool is None or pool.spec.revision != spec.revision:
            return self.share.of(spec.max_instances) > 0
        return pool.has_room()

    async def invoke(self, spec: FunctionSpec, req: InvokeRequest,
                     gone: Callable[[], Awaitable[object]] | None = None) -> InvokeResult:
        """Run one invocation on a warm or new instance; function errors are results. `gone`:
        see Pool.acquire."""
        pool = self.current.get((spec.name, spec.version))
        if pool is None or pool.spec.revision != spec.revision:
            pool = self.pool(spec)
        for obs in self.observers:
            obs.before_invoke(spec, req)
        start = time.time()
        try:
            result, h, cold = await self._dispatch(pool, req, gone)
        except InitFailed as exc:
            result = _init_failure(exc, req)
        except TooManyRequests:
            for obs in self.observers:
                obs.after_throttle(spec, req)
            raise
        except ClientGone:
            for obs in self.observers:
                obs.after_abandon(spec, req)
            raise
        else:
            if cold:
                result.cold = True
                result.fork_ms = h.inst.fork_ms
                result.init_ms = h.inst.init_ms
                result.init_logs = h.inst.init_logs
        end = time.time()
        for obs in self.observers:
            obs.after_invoke(spec, req, result, start, end)
        return result

    async def _dispatch(self, pool: Pool, req: InvokeRequest,
                        gone: Callable[[], Awaitable[object]] | None
                        ) -> tuple[InvokeResult, Handle, bool]:
        """Run `req` on a warm or new instance, and say which and whether it was cold. An
        instance that had ended before it read `req` never started the function: `req` goes
        once more, to another instance."""
        h, cold = await pool.acquire(gone)
        try:
            return await _run(pool, h, req, retry=True), h, cold
        except NotDelivered:
            log.info("instance %s of %s had ended before it read %s: sent to another",
                     h.id, pool.spec.name, req.request_id)
        h, cold = await pool.acquire(gone)
        return await _run(pool, h, req), h, cold

    async def check(self, spec: FunctionSpec) -> None:
        """Load the handler once in a throwaway instance; raise InitFailed if it is broken."""
        sandbox = self.sandbox(spec)
        h = await sandbox.start(spec, new_instance_id())
        await sandbox.stop(h)

    def deploy(self, spec: FunctionSpec) -> None:
        """A version's spec changed (or was created): route new work to a fresh pool."""
        self.pool(spec)

    async def remove(self, name: str, version: str | None = None) -> None:
        """Drain the pools of a deleted function (or one of its versions)."""
        for key in [k for k in self.current if k[0] == name and version in (None, k[1])]:
            self._retire(self.current.pop(key))

    async def scale_to_zero(self, name: str) -> int:
        n = 0
        for (fname, _), pool in list(self.current.items()):
            if fname == name:
                n += await pool.scale_to_zero()
        return n

    def pools_of(self, name: str) -> list[Pool]:
        return [p for (fname, _), p in self.current.items() if fname == name] + [
            p for p in self.draining if p.spec.name == name]

    async def _reap_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.reap_interval_s)
            ticks += 1
            try:
                await self.reap(time.monotonic())
                if ticks % 10 == 0:
                    for sb in self.sandboxes.values():
                        await sb.maintain()
            except Exception:
                log.exception("reaper tick failed")

    async def reap(self, now: float) -> None:
        for pool in list(self.current.values()):
            await pool.reap(now)
            pool.ensure_warm()
        self.draining = [p for p in self.draining if p.size or p.waiters]

    async def close(self) -> None:
        """Stop every instance and zygote; used on shutdown."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        pools = list(self.current.values()) + self.draining
        self.current.clear()
        self.draining.clear()
        await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
        await asyncio.gather(*(sb.close() for sb in self.sandboxes.values()),
                             return_exceptions=True)


async def _run(pool: Pool, h: Handle, req: InvokeRequest, retry: bool = False) -> InvokeResult:
    """One invocation on an acquired instance, which goes back to the pool after."""
    timeout = pool.spec.limits.timeout_s
    req.deadline_ms = int((time.time() + timeout) * 1000)
    try:
        return await pool.sandbox.invoke(h, req, timeout, retry=retry)
    finally:
        pool.release(h)


def _init_failure(exc: InitFailed, req: InvokeRequest) -> InvokeResult:
    err = dict(exc.error)
    logs = err.pop("logs", [])
    logs.append(f"INIT_REPORT Status: error Error Type: {err.get('errorType')}\n")
    err["requestId"] = req.request_id
    return InvokeResult(orjson.dumps(err), "Unhandled", logs=logs, cold=True)
