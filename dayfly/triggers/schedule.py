"""Schedules as triggers: at each cron/rate time an EventBridge Scheduled Event goes into the
durable queue (so it is retried like any async event, and fires while the function is scaled
to zero). Fire times are persisted; after downtime the schedule's missed-fire policy applies:
`skip` (default) forgets the missed times, `catch-up` fires once for the latest of them.

In a cluster the runner runs on the node holding the schedules' lease (control/triggers.py).
A node taking it over from a dead one fires every tick that is late by at most `late_s` (the
lease's hand-over time), each once: those ticks were not missed by the platform, only delayed.
Each fire's event id is fixed by schedule and time, and its record is a compare-and-set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..background import spawn
from ..types import ACCOUNT_ID
from .cron import Cron, Rate, parse_expression

log = logging.getLogger("dayfly.schedule")

MISSED_POLICIES = ("skip", "catch-up")
MAX_MISSED_SCAN = 100_000


@dataclass(slots=True)
class Schedule:
    """One schedule; `last_fire` is the latest fire time handled (fired, or skipped)."""

    id: str
    name: str
    function: str
    qualifier: str | None
    expression: str
    timezone: str = "UTC"
    missed: str = "skip"
    enabled: bool = True
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    last_fire: float = 0.0

    def parsed(self) -> Rate | Cron:
        return parse_expression(self.expression, self.timezone, self.created)


def rule_arn(region: str, name: str) -> str:
    return f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{name}"


def iso_z(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def scheduled_event(s: Schedule, fire_time: float, region: str) -> dict[str, Any]:
    """EventBridge's Scheduled Event; its id is stable per schedule and fire time."""
    return {"version": "0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"dayfly:{s.id}:{fire_time}")),
            "detail-type": "Scheduled Event", "source": "aws.events", "account": ACCOUNT_ID,
            "time": iso_z(fire_time), "region": region, "resources": [rule_arn(region, s.name)],
            "detail": {}}


class ScheduleRunner:
    """One task that sleeps until the next fire time of any schedule (event-loop only state)."""

    def __init__(self, enqueue: Callable[..., Awaitable[Any]],
                 save: Callable[[str, float], Awaitable[None]], region: str,
                 late_s: float = 0.0) -> None:
        self.enqueue = enqueue
        self.save = save
        self.region = region
        self.late_s = late_s  # ticks this late when the runner starts are fired, not missed
        self.schedules: dict[str, Schedule] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self, schedules: list[Schedule]) -> None:
        """Apply the missed-fire policy to what downtime missed, then run."""
        now = time.time()
        for s in schedules:
            self.schedules[s.id] = s
            if s.enabled:
                try:
                    await self._after_downtime(s, now)
                except Exception:
                    log.exception("schedule %s: missed-fire handling failed", s.name)
        self._task = spawn(self._run())

    def put(self, s: Schedule) -> None:
        self.schedules[s.id] = s
        self._wake.set()

    def remove(self, schedule_id: str) -> None:
        self.schedules.pop(schedule_id, None)
        self._wake.set()

    def next_fire(self, s: Schedule) -> float | None:
        return s.parsed().next_after(s.last_fire) if s.enabled else None

    @staticmethod
    def _latest_due(expr: Rate | Cron, after: float, now: float) -> tuple[float | None, int]:
        """The latest fire time in (after, now] and how many there were."""
        latest, n, t = None, 0, expr.next_after(after)
        while t is not None and t <= now and n < MAX_MISSED_SCAN:
            latest, n, t = t, n + 1, expr.next_after(t)
        return latest, n

    async def _after_downtime(self, s: Schedule, now: float) -> None:
        expr = s.parsed()
        if self.late_s > 0:  # a hand-over: the recent ticks are late, not missed; fire each
            recent = max(s.last_fire, now - self.late_s)
            if s.last_fire < recent:  # older ones: the missed-fire policy
                await self._missed(s, s.last_fire, recent)
            t = expr.next_after(recent)
            while t is not None and t <= now:
                await self._fire(s, t)
                t = expr.next_after(t)
            return
        await self._missed(s, s.last_fire, now)

    async def _missed(self, s: Schedule, after: float, now: float) -> None:
        latest, n = self._latest_due(s.parsed(), after, now)
        if latest is None:
            return
        if s.missed == "catch-up":
            log.info("schedule %s: %d fire(s) missed while dayfly was down; catching up once",
                     s.name, n)
            await self._fire(s, latest)
        else:
            log.info("schedule %s: skipping %d fire(s) missed while dayfly was down", s.name, n)
            s.last_fire = latest
            await self.save(s.id, latest)

    async def _fire(self, s: Schedule, fire_time: float) -> None:
        event = scheduled_event(s, fire_time, self.region)
        await self.enqueue(s.function, s.qualifier, orjson.dumps(event), "schedule",
                           event_id=event["id"])
        s.last_fire = fire_time
        await self.save(s.id, fire_time)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            soonest: float | None = None
            now = time.time()
            for s in list(self.schedules.values()):
                if not s.enabled:
                    continue
                try:
                    expr = s.parsed()
                    latest, _ = self._latest_due(expr, s.last_fire, now)
                    if latest is not None:  # late wake-ups coalesce into one fire
                        await self._fire(s, latest)
                    due = expr.next_after(s.last_fire)
                except Exception:
                    log.exception("schedule %s failed to fire; retrying in 1s", s.name)
                    due = now + 1.0
                if due is not None and (soonest is None or due < soonest):
                    soonest = due
            timeout = 60.0 if soonest is None else min(60.0, max(0.0, soonest - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
