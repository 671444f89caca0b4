"""The guarantees every backend gets for free, in one wrapper.

`SafeSandbox` wraps a `Backend` and adds:

1. Deadlines. An invoke still running at its deadline kills the instance and returns
   Lambda's `Task timed out after N seconds` function error.
2. Dead stays dead. After a crash, timeout, kill or stop, `Handle.alive` is False and
   the instance is never handed an invocation again. One that ends while idle (killed
   from outside, or its process exited) is seen at its channel's end: marked dead at
   once and its holder told (`Handle.on_death`: its pool drops it).
3. Crashes are results. An instance that dies mid-invocation yields a
   `Runtime.ExitError` function error for that invocation only. A timed-out or dead
   instance's result carries the most memory it used, read before it is stopped.
4. One invocation at a time. A second concurrent invoke on one handle is a bug and
   raises; stop never waits for an invocation, it kills. An instance of a spec with
   `concurrency` N > 1 takes up to N (the pool keeps count); a timeout, or the caller gone,
   cancels that invocation alone in it, and only an instance that has not stopped it within
   CANCEL_GRACE_S is killed, failing the others with that reason.
5. Stop is idempotent and never raises; invoke after stop returns an error result.
6. Failed starts clean up: the backend kills whatever it created before raising.
7. An invocation the instance never read (it had ended first) raises `NotDelivered` when
   the caller asks (`retry=True`), so it may run elsewhere; otherwise it is the crash of 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import orjson

from ..background import spawn
from ..types import FunctionSpec, InvokeRequest, InvokeResult
from .base import Backend, InitFailed, Instance, InstanceDied, InstanceStats, NotDelivered

CANCEL_GRACE_S = 1.0  # a shared instance's cancelled invocation must stop within this

__all__ = ["Handle", "InitFailed", "NotDelivered", "SafeSandbox"]


class Handle:
    """One instance behind the guarantees; what the scheduler holds."""

    __slots__ = ("alive", "busy", "ended", "inst", "invocations", "last_used", "on_death")

    def __init__(self, inst: Instance, ended: asyncio.Future | None = None) -> None:
        self.inst = inst
        self.alive = True
        self.busy = 0  # invocations running on it (up to its spec's concurrency)
        self.invocations = 0
        self.last_used = time.monotonic()
        self.ended = ended  # done once the instance has ended (the backend's; None: unknown)
        self.on_death: Callable[[Handle], None] | None = None  # told when it ends while idle

    @property
    def id(self) -> str:
        return self.inst.id


def _error_body(error_type: str, message: str, rid: str) -> bytes:
    return orjson.dumps({"errorMessage": message, "errorType": error_type, "requestId": rid,
                         "stackTrace": []})


class SafeSandbox:
    """A backend plus the guarantees above."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.starts: dict[str, int] = {"ok": 0, "init_error": 0, "error": 0}  # for /metrics
        # awaited before each start: e.g. the spec's code fetched to this node's disk
        self.prepare: Callable[[FunctionSpec], Awaitable[None]] | None = None

    @property
    def name(self) -> str:
        return self.backend.name

    async def start(self, spec: FunctionSpec, instance_id: str) -> Handle:
        """Start an instance; InitFailed carries the handler's load error."""
        try:
            if self.prepare is not None:
                await self.prepare(spec)
            inst = await self.backend.start(spec, instance_id)
        except Exception as exc:  # a cancelled start (shutdown) is not a failure
            self.starts["init_error" if isinstance(exc, InitFailed) else "error"] += 1
            raise
        self.starts["ok"] += 1
        h = Handle(inst, self.backend.ended(inst))
        if h.ended is not None:
            h.ended.add_done_callback(lambda _: self._ended(h))
        return h

    def _ended(self, h: Handle) -> None:
        """The instance ended: if idle, it is dead from now on (guarantee 2) and its holder hears
        of it; mid-invocation, invoke hears of it itself."""
        if not h.alive or h.busy:
            return
        h.alive = False
        spawn(self._reap(h.inst))
        if h.on_death is not None:
            h.on_death(h)

    async def _reap(self, inst: Instance) -> None:
        with contextlib.suppress(Exception):  # what it held goes back (its pid, its resources)
            await self.backend.kill(inst)

    async def invoke(self, h: Handle, req: InvokeRequest, timeout_s: float, *,
                     retry: bool = False) -> InvokeResult:
        """Run one invocation; `retry`: raise NotDelivered when the instance had ended before it
        read the invocation (guarantee 7)."""
        if h.busy and h.inst.spec.concurrency == 1:
            raise RuntimeError(f"instance {h.id} is already running an invocation")
        if not h.alive:
            if retry:
                raise NotDelivered("instance was stopped")
            return InvokeResult(_error_body("Runtime.ExitError", "instance was stopped",
                                            req.request_id), "Unhandled", instance_id=h.id)
        h.busy += 1
        t0 = time.perf_counter()
        try:
            # asyncio.timeout cancels this task at the deadline; unlike wait_for it does not
            # wrap the invocation in a task of its own (the warm path's biggest overhead)
            async with asyncio.timeout(timeout_s):
                result = await self.backend.invoke(h.inst, req)
            if result.retire or (h.ended is not None and h.ended.done()):
                await self.stop(h)  # it asked to go, or ended after its answer
            return result
        except TimeoutError:
            if h.inst.spec.concurrency > 1:
                return self._cancel(h, req, timeout_s)
            logs = self.backend.take_logs(h.inst)
            peak = self.backend.peak_kb(h.inst)  # before the kill: its cgroup is then recycled
            await self.stop(h)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            msg = f"{stamp}Z {req.request_id} Task timed out after {timeout_s:.2f} seconds"
            logs.append(msg + "\n")
            return InvokeResult(_error_body("Sandbox.Timedout", msg, req.request_id),
                                "Unhandled", logs=logs, duration_ms=timeout_s * 1000,
                                max_rss_kb=peak, instance_id=h.id)
        except InstanceDied as exc:
            if retry and isinstance(exc, NotDelivered):
                await self.stop(h)
                raise
            logs = self.backend.take_logs(h.inst)
            # what counted against its limit (the cgroup's peak) if known, else its peak RSS
            peak = self.backend.peak_kb(h.inst) or exc.max_rss_kb
            await self.stop(h)
            msg = (exc.reason if exc.error_type != "Runtime.ExitError"
                   else f"RequestId: {req.request_id} Error: {exc.reason}")
            logs.append(msg + "\n")
            return InvokeResult(_error_body(exc.error_type, msg, req.request_id),
                                "Unhandled", logs=logs, max_rss_kb=peak,
                                duration_ms=(time.perf_counter() - t0) * 1000, instance_id=h.id)
        except asyncio.CancelledError:
            # the caller went away mid-invocation: the instance's state is unknown
            if h.inst.spec.concurrency > 1:
                self._cancel(h, req, None)  # a shared one is only told to stop that one
                raise
            await asyncio.shield(self.stop(h))
            raise
        finally:
            h.busy -= 1
            h.invocations += 1
            h.last_used = time.monotonic()

    def _cancel(self, h: Handle, req: InvokeRequest, timeout_s: float | None) -> InvokeResult:
        """One invocation of a shared instance ran past its deadline (or lost its caller): the
        instance is told to cancel it and killed if it has not within CANCEL_GRACE_S (a handler
        blocking the event loop), so the others keep running on it otherwise."""
        rid = req.request_id
        if timeout_s is None:
            why = f"invocation {rid}'s caller went away"
        else:
            why = f"invocation {rid} timed out after {timeout_s:.2f} seconds"
        why = (f"Instance retired: {why} and it did not stop within {CANCEL_GRACE_S:.0f} s, so "
               "the invocations running beside it on this instance (concurrency "
               f"{h.inst.spec.concurrency}) were stopped too")
        logs, stopped = self.backend.cancel(h.inst, rid, why)
        spawn(self._kill_unless(h, stopped))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        msg = f"{stamp}Z {rid} Task timed out after {timeout_s or 0:.2f} seconds"
        logs.append(msg + "\n")
        return InvokeResult(_error_body("Sandbox.Timedout", msg, rid), "Unhandled", logs=logs,
                            duration_ms=(timeout_s or 0) * 1000,
                            max_rss_kb=self.backend.peak_kb(h.inst), instance_id=h.id)

    async def _kill_unless(self, h: Handle, stopped: asyncio.Future) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(stopped), CANCEL_GRACE_S)
        except TimeoutError:
            await self.stop(h)

    async def stop(self, h: Handle) -> None:
        if not h.alive:
            return
        h.alive = False
        with contextlib.suppress(Exception):
            # mid-invocation (a timeout, a crash, the caller gone): killed; idle: retired
            await (self.backend.kill(h.inst) if h.busy else self.backend.retire(h.inst))

    def stats(self, h: Handle) -> InstanceStats:
        return self.backend.stats(h.inst) if h.alive else InstanceStats()

    async def maintain(self) -> None:
        await self.backend.maintain()

    async def close(self) -> None:
        await self.backend.close()
