"""Delivery of queued events: invocations (Event-type invokes, trigger events) and webhook
posts (destinations). At least once; retried with backoff; too old or out of retries →
the on-failure destination and the dead-letter queue; success → the on-success destination.
A throttled delivery waits without spending an attempt (it counts in the event's `throttles`;
`attempts` are the tries that ran the function). An event leaves the queue only after
the invocation record of its delivery is on disk. Causal chains deeper than the limit
are stopped (recursive loops, e.g. a function writing to the bucket that triggers it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import httpx
import orjson

from ..control.event_config import EventConfigs
from ..control.registry import split_name
from ..errors import DayflyError, ResourceNotFound, TooManyRequests
from ..scheduler.scheduler import Scheduler
from ..stores.queue import Event, Queue
from ..types import FunctionSpec, InvokeRequest, InvokeResult

log = logging.getLogger("dayfly.async")

WEBHOOK_ATTEMPTS = 5


def iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class AsyncDispatcher:
    """Pulls due events from the queue and delivers them, `max_in_flight` at a time."""

    def __init__(self, queue: Queue, scheduler: Scheduler,
                 resolve: Callable[[str, str | None], FunctionSpec], arn: Callable[..., str],
                 configs: EventConfigs, *, max_in_flight: int = 64, backoff_s: float = 1.0,
                 max_chain_depth: int = 16,
                 recorded: Callable[[], Awaitable[None]] | None = None) -> None:
        self.queue = queue
        self.scheduler = scheduler
        self.resolve = resolve
        self.arn = arn
        self.configs = configs
        self.max_in_flight = max_in_flight
        self.backoff_s = backoff_s
        self.max_chain_depth = max_chain_depth
        self.recorded = recorded  # returns once finished invocations' records are on disk
        self.tasks: set[asyncio.Task] = set()
        self.http: httpx.AsyncClient | None = None
        self._loop_task: asyncio.Task | None = None
        self._closing = False  # also ends the loop if a cancel is lost (3.11's wait_for)

    def start(self) -> None:
        self.http = httpx.AsyncClient(timeout=10)
        self._loop_task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._pump()
            except Exception:
                log.exception("async dispatcher tick failed")
                await asyncio.sleep(1)

    async def _pump(self) -> None:
        room = self.max_in_flight - len(self.tasks)
        if room <= 0:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            return
        events = await self.queue.take(room, 1.0)
        if self._closing:
            for ev in events:
                await self.queue.release(ev)
            return
        for ev in events:
            task = asyncio.ensure_future(self._deliver(ev))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _deliver(self, ev: Event) -> None:
        """Every delivery ends in ack, retry, dead letter or release (the queue's contract)."""
        try:
            if ev.target:
                await self._post(ev)
            else:
                await self._invoke(ev)
        except asyncio.CancelledError:  # shutting down: the event goes to the next delivery
            with contextlib.suppress(Exception):
                await self.queue.release(ev)
            raise
        except Exception:
            log.exception("delivery of event %s failed; retried later", ev.id)
            try:
                await self.queue.retry(ev, self.backoff_s)
            except Exception:  # the queue itself failed: at least free the event
                log.exception("could not schedule event %s again", ev.id)
                with contextlib.suppress(Exception):
                    await self.queue.release(ev)

    async def _post(self, ev: Event) -> None:
        """A destination webhook: POST the record; 2xx acknowledges."""
        assert self.http is not None and ev.target is not None
        try:
            r = await self.http.post(ev.target, content=ev.payload, headers={
                "Content-Type": "application/json", "X-Dayfly-Event-Id": ev.id,
                "User-Agent": "dayfly-destinations"})
            error = None if r.is_success else f"webhook answered HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            error = f"webhook unreachable: {exc}"
        ev.attempts += 1
        if error is None:
            await self.queue.ack(ev)
        elif ev.attempts >= WEBHOOK_ATTEMPTS:
            await self.queue.dead_letter(ev, error)
        else:
            await self.queue.retry(ev, self.backoff_s * 2 ** (ev.attempts - 1))

    async def _invoke(self, ev: Event) -> None:
        cfg = self.configs.get(ev.function, ev.qualifier)
        if len(ev.chain) >= self.max_chain_depth:
            path = " → ".join([*ev.chain[-4:], ev.function])
            msg = (f"recursive invocation stopped: this event's chain of causes is "
                   f"{len(ev.chain)} functions deep (limit {self.max_chain_depth}): … {path}")
            log.warning("%s (event %s)", msg, ev.id)
            await self.queue.dead_letter(ev, msg)
            return
        if time.time() - ev.created > cfg.max_age_s:
            await self._fail(ev, cfg, None, "EventAgeExceeded", "event exceeded its maximum age")
            return
        try:
            spec = self.resolve(ev.function, ev.qualifier)
        except ResourceNotFound as exc:
            await self.queue.dead_letter(ev, exc.message)
            return
        req = InvokeRequest(request_id=ev.id, payload=ev.payload,
                            invoked_arn=self.arn(ev.function, ev.qualifier), trigger=ev.trigger,
                            idempotency_key=ev.id, chain=ev.chain, throttled=ev.throttles)
        try:
            result = await self.scheduler.invoke(spec, req)
        except TooManyRequests:
            ev.throttles += 1  # not an attempt: the function did not run
            await self.queue.retry(ev, self.backoff_s)
            return
        except DayflyError as exc:
            ev.attempts += 1  # admitted but could not run (e.g. no instance started): spends a try
            await self._retry_or_fail(ev, cfg, None, exc.message)
            return
        ev.attempts += 1
        if self.recorded is not None:  # the event leaves the queue only after its record
            await self.recorded()
        if result.ok:
            await self._destination(ev, cfg.on_success, spec, result, "Success")
            await self.queue.ack(ev)
        else:
            await self._retry_or_fail(ev, cfg, result,
                                      result.payload.decode("utf-8", "replace"), spec)

    async def _retry_or_fail(self, ev: Event, cfg, result: InvokeResult | None, error: str,
                             spec: FunctionSpec | None = None) -> None:
        if ev.attempts > cfg.retries:  # the first try and `retries` more
            await self._fail(ev, cfg, result, "RetriesExhausted", error, spec)
        else:
            await self.queue.retry(ev, self.backoff_s * 2 ** (ev.attempts - 1))

    async def _fail(self, ev: Event, cfg, result: InvokeResult | None, condition: str,
                    error: str, spec: FunctionSpec | None = None) -> None:
        await self._destination(ev, cfg.on_failure, spec, result, condition)
        await self.queue.dead_letter(ev, error)

    async def _destination(self, ev: Event, target: str | None, spec: FunctionSpec | None,
                           result: InvokeResult | None, condition: str) -> None:
        """Queue Lambda's destination record for a function or a webhook (durably)."""
        if not target:
            return
        record = destination_record(ev, spec, result, condition, self.arn(ev.function,
                                                                          ev.qualifier))
        payload = orjson.dumps(record)
        chain = [*ev.chain, ev.function]
        if target.startswith(("http://", "https://")):
            await self.queue.put(ev.function, None, payload, "destination", chain=chain,
                                 target=target)
        else:
            name, qualifier = split_name(target)
            await self.queue.put(name, qualifier, payload, "destination", chain=chain)

    async def close(self) -> None:
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()


def destination_record(ev: Event, spec: FunctionSpec | None, result: InvokeResult | None,
                       condition: str, function_arn: str) -> dict:
    """Lambda's asynchronous invocation record, as sent to destinations."""
    try:
        request_payload = orjson.loads(ev.payload)
    except orjson.JSONDecodeError:
        request_payload = ev.payload.decode("utf-8", "replace")
    record: dict = {
        "version": "1.0",
        "timestamp": iso_now(),
        "requestContext": {"requestId": ev.id,
                           "functionArn": f"{function_arn}:{spec.version}" if spec and
                           ":" + spec.version not in function_arn else function_arn,
                           "condition": condition, "approximateInvokeCount": ev.attempts},
        "requestPayload": request_payload,
    }
    if result is not None:
        ctx: dict = {"statusCode": 200, "executedVersion": spec.version if spec else "$LATEST"}
        if not result.ok:
            ctx["functionError"] = result.error_type or "Unhandled"
        record["responseContext"] = ctx
        try:
            record["responsePayload"] = orjson.loads(result.payload)
        except orjson.JSONDecodeError:
            record["responsePayload"] = result.payload.decode("utf-8", "replace")
    return record
