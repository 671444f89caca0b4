"""One event source mapping's consumer: reads its table's changes in order, batches them, invokes
the function synchronously, retries, bisects, honours partial batch responses, sends exhausted
batches to the on-failure destination, and checkpoints after every batch it is done with.

One consumer per mapping, one batch at a time: order is kept for every key (and globally).
Delivery is at least once: a crash between an invocation and its checkpoint redelivers the batch.
A checkpoint is written only after the invocation records of the batches it covers.
"""

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

from ...background import spawn
from ...errors import DayflyError, ResourceNotFound, TooManyRequests
from ...types import InvokeResult
from .records import failure_record, stream_arn, stream_record
from .source import Change, SourceError, TableURL, open_source, parse_table_url

log = logging.getLogger("dayfly.tables")

IDLE_S = 1.0  # re-read at least this often, so a vanished database is noticed
MAX_PAYLOAD = 6 * 1024 * 1024 - 4096
PRUNE_EVERY_S = 1.0


@dataclass(slots=True)
class Mapping:
    """One event source mapping's settings (Lambda's, in snake case) and where it reads."""

    uuid: str
    function: str
    qualifier: str | None
    source: str  # the table URL as given, password included (never shown)
    view: str = "NEW_AND_OLD_IMAGES"
    enabled: bool = True
    batch_size: int = 100
    window_s: int = 0
    max_retries: int = -1
    max_age_s: int = -1
    bisect: bool = False
    report_failures: bool = False
    on_failure: tuple[str, str | None] | None = None  # destination function, qualifier
    starting_position: str = "LATEST"
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)

    @property
    def url(self) -> TableURL:
        return parse_table_url(self.source)


@dataclass(slots=True)
class Delivery:
    """What a consumer needs from the platform, as plain callables."""

    # function, qualifier, payload, idempotency key, earlier throttled tries of this batch
    invoke: Callable[[str, str | None, bytes, str, int], Awaitable[InvokeResult]]
    enqueue: Callable[[str, str | None, bytes, str], Awaitable[Any]]
    save: Callable[[str, int], Awaitable[int]]  # persist a checkpoint; returns the prune mark
    recorded: Callable[[], Awaitable[None]]  # returns once finished invocations' records are on disk
    arn: Callable[..., str]
    region: str


class Consumer:
    """The ordered reader of one mapping; `health` and `last_result` are shown by the API."""

    def __init__(self, mapping: Mapping, position: int, delivery: Delivery) -> None:
        self.m = mapping
        self.url = mapping.url
        self.position = position
        self.d = delivery
        self.stream_arn = stream_arn(self.url, delivery.region)  # every record's eventSourceARN
        self.source = open_source(self.url)
        self.health = "starting"
        self.last_result = "No records processed"
        self._task: asyncio.Task | None = None
        self._pruned_at = 0.0
        self._pruned = 0
        self._mark = 0  # the newest position every mapping of this table has passed
        self.lag = 0  # committed changes not yet delivered (a metric), measured once a second
        self._lag_at = 0.0

    def start(self) -> None:
        self._task = spawn(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.source.close()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self.source.open()
                await self.source.install()
                head = await self.source.head()
                if self.position > head:  # the change log was recreated (database restored?)
                    log.warning("mapping %s: change log of %s restarted at %d (checkpoint %d); "
                                "reading it from the start", self.m.uuid, self.url.masked, head,
                                self.position)
                    self.position = 0
                    await self.d.save(self.m.uuid, 0)
                self.health = "healthy"
                backoff = 0.5
                await self._consume()
            except SourceError as exc:
                self.health = f"unhealthy: {exc}"
                log.warning("mapping %s: %s (retrying in %.1fs)", self.m.uuid, exc, backoff)
            except Exception as exc:
                self.health = f"unhealthy: {type(exc).__name__}: {exc}"
                log.exception("mapping %s failed (retrying in %.1fs)", self.m.uuid, backoff)
            await self.source.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _consume(self) -> None:
        size = self.m.batch_size
        while True:
            await self._measure_lag()
            batch = await self.source.read(self.position, size)
            if not batch:
                await self._prune()
                await self.source.wait(IDLE_S)
                continue
            if self.m.window_s and len(batch) < size:
                deadline = time.monotonic() + self.m.window_s
                while len(batch) < size and (left := deadline - time.monotonic()) > 0:
                    await self.source.wait(min(left, IDLE_S))
                    batch += await self.source.read(batch[-1].seq, size - len(batch))
            await self._deliver(self._fit(batch))

    async def _measure_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at >= 1.0:
            self._lag_at = now
            self.lag = max(0, await self.source.head() - self.position)

    def _record(self, change: Change) -> dict[str, Any]:
        return stream_record(change, view=self.m.view, source_key=self.url.key,
                             source_arn=self.stream_arn, dayfly_arn=self.url.arn,
                             region=self.d.region)

    def _fit(self, batch: list[Change]) -> list[tuple[Change, bytes]]:
        """Records encoded once; cut where the event would exceed Lambda's 6 MB payload."""
        out: list[tuple[Change, bytes]] = []
        total = 0
        for change in batch:
            rec = orjson.dumps(self._record(change))
            total += len(rec) + 1
            if out and total > MAX_PAYLOAD:
                break
            out.append((change, rec))
        return out

    async def _deliver(self, batch: list[tuple[Change, bytes]]) -> None:
        """Handle one batch to the end: delivered, or given up (on-failure) after retries."""
        parts = [batch]
        while parts:
            part = parts.pop(0)
            invokes = blocked = 0
            while part:
                expired = self._expired(part)
                if expired:
                    await self._give_up(part[:expired], "RecordAgeExceeded", invokes, None)
                    part = part[expired:]
                    continue
                invokes += 1
                outcome, detail = await self._invoke(part, blocked)
                if outcome == "ok":
                    await self._advance(part[-1][0].seq)
                    break
                if outcome == "blocked":  # throttled or no such function: not an attempt
                    invokes -= 1
                    blocked += 1
                    await asyncio.sleep(min(0.05 * 2 ** blocked, 5.0))
                    continue
                blocked = 0
                if outcome == "partial":
                    i = int(detail or 0)
                    if i:
                        await self._advance(part[i - 1][0].seq)
                        part = part[i:]
                elif self.m.bisect and len(part) > 1:
                    mid = len(part) // 2
                    parts[:0] = [part[:mid], part[mid:]]
                    break
                if self.m.max_retries != -1 and invokes > self.m.max_retries:
                    await self._give_up(part, "RetryAttemptsExhausted", invokes,
                                        detail if outcome == "failed" else None)
                    break
                await asyncio.sleep(min(0.2 * 2 ** (invokes - 1), 10.0))

    def _expired(self, part: list[tuple[Change, bytes]]) -> int:
        """How many leading records are older than MaximumRecordAgeInSeconds."""
        if self.m.max_age_s == -1:
            return 0
        cutoff = time.time() - self.m.max_age_s
        n = 0
        while n < len(part) and part[n][0].ts < cutoff:
            n += 1
        return n

    async def _invoke(self, part: list[tuple[Change, bytes]],
                      throttled: int = 0) -> tuple[str, str | None]:
        """One invocation: ("ok"|"failed"|"partial"|"blocked", error type or failed index)."""
        payload = b'{"Records":[' + b",".join(rec for _, rec in part) + b"]}"
        # the same records, retried, keep one key: handlers can make their effects idempotent
        key = f"{self.m.uuid}:{part[0][0].seq}-{part[-1][0].seq}"
        try:
            result = await self.d.invoke(self.m.function, self.m.qualifier, payload, key,
                                         throttled)
        except TooManyRequests:
            return "blocked", "throttled"
        except ResourceNotFound as exc:
            self.health = f"unhealthy: {exc.message}"
            self.last_result = "PROBLEM: Function not found"
            return "blocked", "not found"
        except DayflyError as exc:
            self.last_result = f"PROBLEM: {exc.message}"
            return "failed", exc.code
        self.health = "healthy"
        if not result.ok:
            self.last_result = "PROBLEM: Function call failed"
            return "failed", result.error_type
        self.last_result = "OK"
        if self.m.report_failures:
            first = _first_failure(result.payload, part)
            if first is not None:
                self.last_result = "PROBLEM: Function reported batch item failures"
                return "partial", str(first)
        return "ok", None

    async def _advance(self, seq: int) -> None:
        await self.d.recorded()  # a checkpoint never runs ahead of the records it covers
        self.position = seq
        self._mark = await self.d.save(self.m.uuid, seq)
        await self._prune()

    async def _prune(self) -> None:
        now = time.monotonic()
        if self._mark > self._pruned and now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at, self._pruned = now, self._mark
            await self.source.prune(self._mark)

    async def _give_up(self, part: list[tuple[Change, bytes]], condition: str, invokes: int,
                       error_type: str | None) -> None:
        changes = [c for c, _ in part]
        if self.m.on_failure is not None:
            name, qualifier = self.m.on_failure
            rec = failure_record(changes, condition=condition, attempts=invokes,
                                 function_arn=self.d.arn(self.m.function, self.m.qualifier),
                                 error_type=error_type, source_key=self.url.key,
                                 source_arn=self.stream_arn, dayfly_arn=self.url.arn,
                                 request_id=str(uuid.uuid4()))
            await self.d.enqueue(name, qualifier, orjson.dumps(rec), "destination")
        log.warning("mapping %s: %s for records %d..%d%s", self.m.uuid, condition,
                    changes[0].seq, changes[-1].seq,
                    "; sent to the on-failure destination" if self.m.on_failure else
                    "; discarded (no on-failure destination)")
        await self._advance(changes[-1].seq)


def _first_failure(payload: bytes, part: list[tuple[Change, bytes]]) -> int | None:
    """Index of the first failed record of a partial batch response; None if all succeeded.

    As on Lambda, a malformed response or an unknown identifier fails the whole batch (0)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or not body.get("batchItemFailures"):
        return None
    failures = body["batchItemFailures"]
    if not isinstance(failures, list):
        return 0
    index = {str(c.seq): i for i, (c, _) in enumerate(part)}
    first = len(part)
    for f in failures:
        ident = f.get("itemIdentifier") if isinstance(f, dict) else None
        if not isinstance(ident, str) or ident not in index:
            return 0
        first = min(first, index[ident])
    return first
