"""The durable event queue on NATS JetStream (cluster mode): the `Queue` every node shares.

Names derive from `prefix` (the cluster name), so two clusters, or tests, share one server:
- stream `{p}_events`, subjects `{p}.events.<function>`, work-queue retention: an event is
  in the stream from its PubAck until a delivery acks it (dead-lettered or succeeded);
- one durable pull consumer `{p}_dispatch` shared by every node: each event goes to one node;
- stream `{p}_dlq`, subjects `{p}.dlq.<function>.<event id>`: dead letters, kept until
  redriven or purged (a subject per event makes show, redrive and purge by id direct reads);
- KV bucket `{p}_counts`: attempts and throttles of an event that was retried.

Guarantees, in the order the code keeps them:
1. `put` publishes with `Nats-Msg-Id` = the event id (JetStream drops a second copy within the
   stream's duplicate window) and returns only after the PubAck: the 202 follows the store.
2. A delivery is held by one node, which tells JetStream `in_progress()` every ack_wait / 3
   while it runs; when that node dies the heartbeats stop and JetStream hands the event to
   another node after ack_wait.
3. `retry` writes the event's counts to KV, then naks with the delay: the backoff is
   JetStream's redelivery. A redelivered event reads its counts back (none: it never failed
   before, or its node died before counting the try, as with SQLite).
4. `dead_letter` publishes the event, its counts, the error and the failure time to the DLQ
   (PubAck) before it acks the delivery: a crash between the two leaves it in both, never in
   neither. Errors are kept up to MAX_ERROR bytes (a header each dead letter carries).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RawStreamMsg, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from .queue import Event, Queue, QueueSummary

log = logging.getLogger("dayfly.jsqueue")

MAX_ERROR = 32 * 1024
_HEADER = "Dayfly-Event"  # the event's fields but its payload (the message body), as JSON
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def token(s: str) -> str:
    """`s` as one subject token / KV key / message id: itself when it is plain (function
    names, uuids), else `=` and a digest (`=` appears in neither)."""
    return s if _TOKEN.match(s) else "=" + hashlib.sha256(s.encode()).hexdigest()[:40]


def _header(fields: dict[str, Any]) -> str:
    """Fields as one header line: JSON, ASCII only (escapes keep newlines and non-ASCII text
    out of the NATS header block)."""
    out = orjson.dumps(fields)
    return out.decode() if out.isascii() else json.dumps(fields)


class JetStreamQueue(Queue):
    """Events in a JetStream work-queue stream, delivered through one shared pull consumer."""

    def __init__(self, js: JetStreamContext, prefix: str, *, ack_wait_s: float = 30.0,
                 replicas: int = 1, max_msg_size: int = 1 << 20, timeout_s: float = 10.0,
                 max_ack_pending: int = 100_000) -> None:
        self.js = js
        self.prefix = prefix
        self.events_stream = f"{prefix}_events"
        self.dlq_stream = f"{prefix}_dlq"
        self.consumer = f"{prefix}_dispatch"
        self.counts_bucket = f"{prefix}_counts"
        self.ack_wait_s = ack_wait_s
        self.replicas = replicas
        self.max_msg_size = max_msg_size
        self.timeout_s = timeout_s
        self.max_ack_pending = max_ack_pending
        self.held: dict[int, Msg] = {}  # deliveries this node runs, by stream sequence
        self._sub: JetStreamContext.PullSubscription | None = None
        self._kv: KeyValue | None = None
        self._heartbeat: asyncio.Task | None = None

    # -- set-up -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Create (or join) the streams, the KV bucket and the shared consumer."""
        await self._stream(StreamConfig(
            name=self.events_stream, subjects=[f"{self.prefix}.events.>"],
            retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
            num_replicas=self.replicas, max_msg_size=self.max_msg_size, duplicate_window=120))
        await self._stream(StreamConfig(
            name=self.dlq_stream, subjects=[f"{self.prefix}.dlq.>"], storage=StorageType.FILE,
            num_replicas=self.replicas, max_msg_size=self.max_msg_size, duplicate_window=120))
        try:
            self._kv = await self.js.key_value(self.counts_bucket)
        except NotFoundError:
            self._kv = await self.js.create_key_value(bucket=self.counts_bucket, history=1,
                                                      ttl=86400, replicas=self.replicas)
        with contextlib.suppress(BadRequestError):  # another node created it first
            await self.js.add_consumer(self.events_stream, ConsumerConfig(
                durable_name=self.consumer, ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s, max_deliver=-1, max_ack_pending=self.max_ack_pending,
                filter_subject=f"{self.prefix}.events.>"))
        self._sub = await self.js.pull_subscribe_bind(durable=self.consumer,
                                                      stream=self.events_stream)
        self._heartbeat = asyncio.ensure_future(self._beat())

    async def _stream(self, config: StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except BadRequestError:  # exists with other settings: bring them up to date
            await self.js.update_stream(config)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self._sub.unsubscribe()
        self.held.clear()

    async def _beat(self) -> None:
        """Keep the deliveries this node runs its own (guarantee 2)."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            for msg in list(self.held.values()):
                try:
                    await msg.in_progress()
                except Exception:  # lost connection: JetStream redelivers after ack_wait
                    log.warning("heartbeat for a delivery failed", exc_info=True)

    # -- the queue --------------------------------------------------------------------------

    async def _publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        fut = await self.js.publish_async(subject, payload, headers=headers)
        async with asyncio.timeout(self.timeout_s):  # cheaper than wait_for: no task per put
            await fut

    async def put(self, function: str, qualifier: str | None, payload: bytes,
                  trigger: str = "event", *, chain: list[str] | None = None,
                  target: str | None = None, event_id: str | None = None) -> str:
        ev_id = event_id or str(uuid.uuid4())
        await self._put(Event(ev_id, function, qualifier, payload, trigger, created=time.time(),
                              chain=list(chain or []), target=target), token(ev_id))
        return ev_id

    async def _put(self, ev: Event, msg_id: str) -> None:
        fields = {"id": ev.id, "function": ev.function, "qualifier": ev.qualifier,
                  "trigger": ev.trigger, "created": ev.created, "chain": ev.chain,
                  "target": ev.target}
        await self._publish(f"{self.prefix}.events.{token(ev.function)}", ev.payload,
                            {"Nats-Msg-Id": msg_id, _HEADER: _header(fields)})

    async def take(self, limit: int, wait_s: float) -> list[Event]:
        assert self._sub is not None, "start() first"
        try:
            msgs = await self._sub.fetch(limit, timeout=max(wait_s, 0.001))
        except TimeoutError:  # nats-py raises its own subclass or asyncio's
            return []
        out = []
        for msg in msgs:
            try:
                f = orjson.loads((msg.headers or {})[_HEADER])
                ev = Event(f["id"], f["function"], f["qualifier"], msg.data, f["trigger"],
                           created=f["created"], chain=f["chain"], target=f["target"],
                           receipt=msg)
            except (KeyError, TypeError, ValueError):  # not one of ours: never redeliver it
                log.warning("message %s on %s is no dayfly event; dropped",
                            msg.metadata.sequence.stream, msg.subject)
                await msg.term()
                continue
            if msg.metadata.num_delivered > 1:
                ev.attempts, ev.throttles = await self._counts(ev.id)
            self.held[msg.metadata.sequence.stream] = msg
            out.append(ev)
        return out

    async def _counts(self, ev_id: str) -> tuple[int, int]:
        assert self._kv is not None
        try:
            entry = await self._kv.get(token(ev_id))
        except KeyNotFoundError:
            return 0, 0
        attempts, throttles = (entry.value or b"0 0").split()
        return int(attempts), int(throttles)

    def _release(self, ev: Event) -> Msg:
        msg = ev.receipt
        if not isinstance(msg, Msg):
            raise ValueError(f"event {ev.id} was not taken from this queue")
        self.held.pop(msg.metadata.sequence.stream, None)
        return msg

    async def _forget_counts(self, ev: Event, msg: Msg) -> None:
        if msg.metadata.num_delivered > 1 and self._kv is not None:
            with contextlib.suppress(KeyNotFoundError):
                await self._kv.delete(token(ev.id))

    async def ack(self, ev: Event) -> None:
        msg = self._release(ev)
        await msg.ack_sync(self.timeout_s)
        await self._forget_counts(ev, msg)

    async def retry(self, ev: Event, delay_s: float) -> None:
        msg = self._release(ev)
        if ev.attempts or ev.throttles:
            assert self._kv is not None
            await self._kv.put(token(ev.id), f"{ev.attempts} {ev.throttles}".encode())
        await msg.nak(delay=delay_s)

    async def release(self, ev: Event) -> None:
        await self._release(ev).nak()

    async def dead_letter(self, ev: Event, error: str) -> None:
        msg = self._release(ev)
        fields = {"id": ev.id, "function": ev.function, "qualifier": ev.qualifier,
                  "trigger": ev.trigger, "attempts": ev.attempts, "throttles": ev.throttles,
                  "created": ev.created, "failed": time.time(), "error": error[:MAX_ERROR],
                  "chain": ev.chain, "target": ev.target}
        await self._publish(self._dead_subject(ev.function, ev.id), ev.payload, {
            "Nats-Msg-Id": f"dead-{msg.metadata.sequence.stream}",
            _HEADER: _header(fields)})
        await msg.ack_sync(self.timeout_s)
        await self._forget_counts(ev, msg)

    async def depth(self, function: str | None = None) -> int:
        if function is None:
            return (await self.js.stream_info(self.events_stream)).state.messages
        subject = f"{self.prefix}.events.{token(function)}"
        info = await self.js.stream_info(self.events_stream, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0)

    async def summary(self) -> QueueSummary:
        events = await self._per_function(self.events_stream, "events")
        oldest = None
        if events:
            first = await self._next(self.events_stream, f"{self.prefix}.events.>", 1)
            oldest = orjson.loads((first.headers or {})[_HEADER])["created"] if first else None
        dead = await self._per_function(self.dlq_stream, "dlq")
        return QueueSummary(events, oldest, dead)

    async def _per_function(self, stream: str, kind: str) -> dict[str, int]:
        """Messages per function token of `stream` (a dead letter counts once)."""
        info = await self.js.stream_info(stream, subjects_filter=f"{self.prefix}.{kind}.>")
        out: dict[str, int] = {}
        for subject, n in (info.state.subjects or {}).items():
            fn = subject.split(".")[2]
            out[fn] = out.get(fn, 0) + (n if kind == "events" else 1)
        return out

    async def _next(self, stream: str, subject: str, seq: int) -> RawStreamMsg | None:
        try:
            return await self.js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return None

    # -- the dead-letter queue --------------------------------------------------------------

    def _dead_subject(self, function: str, ev_id: str | None = None) -> str:
        return f"{self.prefix}.dlq.{token(function)}.{token(ev_id) if ev_id else '*'}"

    async def _dead_msgs(self, function: str | None,
                         ids: list[str] | None) -> list[RawStreamMsg]:
        """Dead-letter messages of a function (or of all), oldest first."""
        if function is None:
            subjects = [f"{self.prefix}.dlq.>"]
        else:
            subjects = [self._dead_subject(function, i) for i in ids] if ids else [
                self._dead_subject(function)]
        out = []
        for subject in subjects:
            seq = 1
            while (m := await self._next(self.dlq_stream, subject, seq)) is not None:
                out.append(m)
                seq = (m.seq or seq) + 1
        return sorted(out, key=lambda m: m.seq or 0)

    async def dead(self, function: str | None = None, limit: int = 100,
                   event_id: str | None = None) -> list[dict[str, Any]]:
        if function is None and event_id is not None:
            rows = [r for r in await self.dead(None, 1 << 30) if r["id"] == event_id]
            return rows[:limit]
        latest: dict[str, dict[str, Any]] = {}  # by id: a dead letter stored twice shows once
        for m in await self._dead_msgs(function, [event_id] if event_id else None):
            row = orjson.loads((m.headers or {})[_HEADER])
            row["payload"] = (m.data or b"").decode("utf-8", "replace")
            latest[row["id"]] = row
        return sorted(latest.values(), key=lambda r: r["failed"], reverse=True)[:limit]

    async def redrive(self, function: str, ids: list[str] | None = None) -> int:
        moved: set[str] = set()
        now = time.time()
        for m in await self._dead_msgs(function, ids):
            row = orjson.loads((m.headers or {})[_HEADER])
            if row["id"] not in moved:  # a new message id: the first may still be remembered
                await self._put(Event(row["id"], row["function"], row["qualifier"],
                                      m.data or b"", row["trigger"], created=now,
                                      chain=row["chain"], target=row["target"]),
                                f"redrive-{m.seq}")
                moved.add(row["id"])
            with contextlib.suppress(NotFoundError):
                await self.js.delete_msg(self.dlq_stream, m.seq or 0)
        return len(moved)

    async def purge(self, function: str, ids: list[str] | None = None) -> int:
        subjects = [self._dead_subject(function, i) for i in ids] if ids else [
            self._dead_subject(function)]
        n = 0
        for subject in subjects:
            info = await self.js.stream_info(self.dlq_stream, subjects_filter=subject)
            found = len(info.state.subjects or {})
            if found:
                await self.js.purge_stream(self.dlq_stream, subject=subject)
                n += found
        return n

    async def delete(self) -> None:
        """Remove every stream, consumer and bucket of this prefix (tests, teardown)."""
        await self.close()
        for stream in (self.events_stream, self.dlq_stream):
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(stream)
        with contextlib.suppress(NotFoundError):
            await self.js.delete_key_value(self.counts_bucket)
