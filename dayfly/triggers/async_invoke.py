"""Delivery of queued (Event-type) invocations: at least once, retried with backoff, then
dead-lettered; a throttled delivery waits without spending an attempt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..errors import DayflyError, ResourceNotFound, TooManyRequests
from ..scheduler.scheduler import Scheduler
from ..stores.queue import Event, EventQueue
from ..types import FunctionSpec, InvokeRequest

log = logging.getLogger("dayfly.async")

MAX_RETRIES = 2  # Lambda's default MaximumRetryAttempts
MAX_AGE_S = 6 * 3600.0  # Lambda's default MaximumEventAgeInSeconds


class AsyncDispatcher:
    """Pulls due events from the queue and invokes them, `max_in_flight` at a time."""

    def __init__(self, queue: EventQueue, scheduler: Scheduler,
                 resolve: Callable[[str, str | None], FunctionSpec], arn: Callable[..., str],
                 *, max_in_flight: int = 64, backoff_s: float = 1.0) -> None:
        self.queue = queue
        self.scheduler = scheduler
        self.resolve = resolve
        self.arn = arn
        self.max_in_flight = max_in_flight
        self.backoff_s = backoff_s
        self.tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        self._loop_task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self._pump()
            except Exception:
                log.exception("async dispatcher tick failed")
                await asyncio.sleep(1)

    async def _pump(self) -> None:
        room = self.max_in_flight - len(self.queue.in_flight)
        events = await self.queue.due(room) if room > 0 else []
        for ev in events:
            self.queue.in_flight.add(ev.id)
            task = asyncio.ensure_future(self._deliver(ev))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        nxt = await self.queue.next_due() if not events else time.time()
        wait = 1.0 if nxt is None else max(0.0, min(1.0, nxt - time.time()))
        self.queue.wakeup.clear()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.wakeup.wait(), wait)

    async def _deliver(self, ev: Event) -> None:
        try:
            await self._attempt(ev)
        finally:
            self.queue.in_flight.discard(ev.id)
            self.queue.wakeup.set()

    async def _attempt(self, ev: Event) -> None:
        if time.time() - ev.created > MAX_AGE_S:
            await self.queue.dead_letter(ev, "event exceeded its maximum age")
            return
        try:
            spec = self.resolve(ev.function, ev.qualifier)
        except ResourceNotFound as exc:
            await self.queue.dead_letter(ev, exc.message)
            return
        # Lambda keeps the request id across retries: the 202's id finds every attempt
        req = InvokeRequest(request_id=ev.id, payload=ev.payload,
                            invoked_arn=self.arn(ev.function, ev.qualifier), trigger=ev.trigger)
        try:
            result = await self.scheduler.invoke(spec, req)
        except TooManyRequests:
            await self.queue.retry(ev, self.backoff_s, count_attempt=False)
            return
        except DayflyError as exc:
            result = None
            error = exc.message
        else:
            error = result.payload.decode("utf-8", "replace") if not result.ok else ""
        if result is not None and result.ok:
            await self.queue.ack(ev)
        elif ev.attempts >= MAX_RETRIES:
            await self.queue.dead_letter(ev, error)
        else:
            await self.queue.retry(ev, self.backoff_s * 2 ** ev.attempts)

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
