"""The pool of one function revision: warm reuse, single-flight starts, a bounded queue, reaping."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ..errors import ClientGone, TooManyRequests
from ..sandbox.safe import Handle, InitFailed, SafeSandbox
from ..types import FunctionSpec
from .pressure import Pressure

log = logging.getLogger("dayfly.scheduler")

_ids = itertools.count(1)
_BOOT = os.urandom(3).hex()


def new_instance_id() -> str:
    return f"{_BOOT}{next(_ids):06x}"


class Pool:
    """Instances of one revision.

    Guarded by the event loop (single-threaded): `idle` (LIFO, warmest last), `busy`,
    `starting` and `waiters`. Starts are single-flight: a start is launched only while
    fewer starts are in flight than requests are waiting, and a started instance goes to
    the oldest waiter, not to whoever asked for the start. If a start fails to init,
    every request waiting at that moment gets the same error (the code is broken for
    all of them) instead of each launching its own doomed start.

    With `spec.concurrency` N > 1 an instance serves up to N invocations at once: `load`
    counts them per busy instance, a request goes to a busy instance with room before an idle
    one, and an instance starts only when every one is at N (a start then serves N waiters).
    """

    def __init__(self, spec: FunctionSpec, sandbox: SafeSandbox, *, max_queue: int = 256,
                 queue_timeout_s: float = 10.0, max_parallel_starts: int | None = None,
                 max_instances: int | None = None) -> None:
        self.spec = spec
        self.sandbox = sandbox
        # this node's share of the spec's limit (scheduler/share.py); the spec's on one node
        self.max_instances = spec.max_instances if max_instances is None else max_instances
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.max_parallel_starts = max_parallel_starts or max(2, os.cpu_count() or 2)
        self.idle: list[Handle] = []
        self.busy: set[Handle] = set()
        self.load: dict[Handle, int] = {}  # concurrency > 1: invocations on each busy instance
        self.starting = 0
        self.waiters: deque[asyncio.Future] = deque()
        self.draining = False
        self.tasks: set[asyncio.Task] = set()
        self.last_used = time.monotonic()
        self.pressure = Pressure()

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy) + self.starting

    def has_room(self) -> bool:
        """Whether a request arriving now is served without waiting for another to finish: an
        idle instance, or room under the limit to start one."""
        return (bool(self.idle) or self.size < self.max_instances
                or any(n < self.spec.concurrency for n in self.load.values()))

    def resize(self, max_instances: int) -> None:
        """A new limit (this node's share changed): idle instances over it stop now, busy ones
        when they are released; under it, waiting requests may start instances."""
        self.max_instances = max_instances
        while self.idle and self.size > max_instances:
            self._spawn(self.sandbox.stop(self.idle.pop(0)))  # the coldest first
        self._maybe_start()

    async def acquire(self, gone: Callable[[], Awaitable[object]] | None = None
                      ) -> tuple[Handle, bool]:
        """A handle reserved for one invocation, and whether it was started for this request.
        `gone()` returns when the caller hangs up: a queued request then leaves the queue (so
        no instance serves a caller that is no longer there) and ClientGone is raised."""
        self.last_used = time.monotonic()
        if self.load:  # concurrency > 1: a busy instance with room first
            for h, n in self.load.items():
                if n < self.spec.concurrency and h.alive:
                    self.load[h] = n + 1
                    return h, False
        while self.idle:
            h = self.idle.pop()
            if h.alive:
                self.busy.add(h)
                if self.spec.concurrency > 1:
                    self.load[h] = 1
                return h, False
        if self.max_instances <= 0:
            raise TooManyRequests(f"Rate Exceeded: {self.spec.name} has reserved concurrency 0 "
                                  "(throttled)" if self.spec.max_instances <= 0 else
                                  f"Rate Exceeded: {self.spec.name}'s concurrency limit "
                                  f"({self.spec.max_instances}) leaves no share to this node")
        if len(self.waiters) >= self.max_queue:  # refused at once: waiting cannot help
            raise TooManyRequests(f"Rate Exceeded: {self.spec.name} has {self.size} instances "
                                  f"(limit {self.max_instances}) and {len(self.waiters)} "
                                  "queued requests", retry_after_s=self.pressure.note_refused())
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self._maybe_start()
        watch = None
        if gone is not None:
            def hung_up(_: object) -> None:
                if not fut.done():
                    fut.set_exception(ClientGone(f"the caller of {self.spec.name} hung up "
                                                 "while queued"))
            watch = asyncio.ensure_future(gone())
            watch.add_done_callback(hung_up)
        try:
            h, cold = await asyncio.wait_for(fut, self.queue_timeout_s)
        except TimeoutError:
            raise TooManyRequests(f"Rate Exceeded: {self.spec.name} waited "
                                  f"{self.queue_timeout_s:.0f} s for a free instance") from None
        finally:
            if watch is not None:
                watch.cancel()
            if not fut.done():
                fut.cancel()
            with contextlib.suppress(ValueError):
                self.waiters.remove(fut)
        return h, cold

    def release(self, h: Handle) -> None:
        """Give the handle back after an invocation: to a waiter, to the idle list, or stop it."""
        if self.spec.concurrency > 1:
            n = self.load.pop(h, 1) - 1
            if n > 0 and h.alive:  # still at work: the freed place goes to a waiter
                self.load[h] = n
                self.pressure.note_served()
                self._hand_over(h, cold=False)
                return
        self.busy.discard(h)
        self.pressure.note_served()
        if not h.alive:
            self._maybe_start()
            return
        if self.size >= self.max_instances:  # over a limit that shrank while it ran
            self._spawn(self.sandbox.stop(h))
            return
        if self._hand_over(h, cold=False):
            return
        if self.draining:
            self._spawn(self.sandbox.stop(h))
        else:
            self.idle.append(h)

    def _hand_over(self, h: Handle, cold: bool) -> bool:
        """To the oldest waiters: one, or with concurrency > 1 as many as `h` has room for."""
        handed = False
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                self.busy.add(h)
                fut.set_result((h, cold))
                if self.spec.concurrency == 1:
                    return True
                handed, cold = True, False  # the start is the first one's
                n = self.load[h] = self.load.get(h, 0) + 1
                if n >= self.spec.concurrency:
                    break
        return handed

    def _maybe_start(self) -> None:
        while (not self.draining and self.starting * self.spec.concurrency < len(self.waiters)
               and self.size < self.max_instances
               and self.starting < self.max_parallel_starts):
            self.starting += 1
            self._spawn(self._start_one())

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _start_one(self, warm_only: bool = False) -> None:
        try:
            h = await self.sandbox.start(self.spec, new_instance_id())
        except InitFailed as exc:
            self.starting -= 1
            waiting, self.waiters = list(self.waiters), deque()
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except Exception as exc:
            self.starting -= 1
            log.exception("could not start an instance of %s", self.spec.pool_key)
            if self.waiters:
                fut = self.waiters.popleft()
                if not fut.done():
                    fut.set_exception(exc)
            self._maybe_start()
            return
        self.starting -= 1
        h.on_death = self._dead
        if not warm_only and self._hand_over(h, cold=True):
            self._maybe_start()  # a burst: the waiters beyond max_parallel_starts get theirs
            return
        if self.draining:
            await self.sandbox.stop(h)
        else:
            self.idle.append(h)
            if warm_only:
                self.ensure_warm()  # the next (a failed one is retried by the reaper's round)

    def _dead(self, h: Handle) -> None:
        """An idle instance ended (killed from outside, or it exited): no request is handed it,
        and a waiting one may start another in its place. A busy one leaves at `release`."""
        if h in self.idle:
            self.idle.remove(h)
            self._maybe_start()

    def ensure_warm(self) -> None:
        """Start instances (in the background) until `min_warm` exist, at most
        `max_parallel_starts` at a time: each start that succeeds launches the next. (All at
        once, a min_warm of 5,000 held 5,000 starts' descriptors together: EMFILE, issue 18.)"""
        missing = min(self.spec.min_warm, self.max_instances) - self.size
        room = self.max_parallel_starts - self.starting
        for _ in range(max(0, min(missing, room))):
            self.starting += 1
            self._spawn(self._start_one(warm_only=True))

    async def reap(self, now: float) -> int:
        """Stop instances idle longer than the idle timeout, keeping `min_warm`; return how many."""
        keep = self.spec.min_warm
        stale = [h for h in self.idle if now - h.last_used > self.spec.idle_timeout_s]
        stale = stale[: max(0, len(self.idle) - keep)]
        for h in stale:
            self.idle.remove(h)
            await self.sandbox.stop(h)
        self.idle = [h for h in self.idle if h.alive]
        return len(stale)

    async def scale_to_zero(self) -> int:
        """Stop every idle instance now (busy ones finish first)."""
        idle, self.idle = self.idle, []
        for h in idle:
            await self.sandbox.stop(h)
        return len(idle)

    async def drain(self) -> None:
        """Take no new work: idle instances stop now; busy ones serve what is already queued here,
        then stop."""
        self.draining = True
        await self.scale_to_zero()

    async def close(self) -> None:
        self.draining = True
        for fut in self.waiters:
            if not fut.done():
                fut.set_exception(TooManyRequests(f"{self.spec.name} is shutting down"))
        self.waiters.clear()
        await self.scale_to_zero()
        for h in list(self.busy):
            await self.sandbox.stop(h)
        for task in list(self.tasks):
            task.cancel()

    def handles(self) -> list[tuple[Handle, str]]:
        return [(h, "idle") for h in self.idle] + [(h, "busy") for h in self.busy]
