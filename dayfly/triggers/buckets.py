"""Bucket triggers: an object event (from the built-in store, or posted by an external one) is
matched against its bucket's notification configurations, and each match becomes one durably
queued event for that function (`{"Records": [record]}`, trigger `s3`) before the change is
acknowledged. A write signed by a function's own key extends that function's chain of causes,
so a function writing into the bucket that triggers it is stopped at the chain depth limit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

import orjson

from ..control.function_keys import FunctionKeys
from ..control.notifications import LOCAL, NotificationStore, Rule
from ..control.registry import Registry
from ..errors import ResourceNotFound
from ..stores.queue import Queue
from .causes import InFlight
from .webhook import routable

log = logging.getLogger("dayfly.buckets")


class BucketTriggers:
    """The object store's `on_event` hook, and the router for ingested external events."""

    def __init__(self, notifications: NotificationStore, queue: Queue, registry: Registry,
                 keys: FunctionKeys, inflight: InFlight) -> None:
        self.notifications = notifications
        self.queue = queue
        self.registry = registry
        self.keys = keys
        self.inflight = inflight

    def unknown_functions(self, rules: Iterable[Rule]) -> list[str]:
        """The destinations (as given) naming a function, version or alias that does not exist."""
        bad = []
        for r in rules:
            try:
                self.registry.config(r.function, r.qualifier)
            except ResourceNotFound:
                bad.append(r.arn or r.function)
        return bad

    async def on_event(self, record: dict[str, Any]) -> None:
        """The built-in store's hook: called after the commit, before the response."""
        await self.route(LOCAL, record, self._chain(record))

    def _chain(self, record: dict[str, Any]) -> list[str]:
        principal = (record.get("userIdentity") or {}).get("principalId", "")
        function = self.keys.function_of(principal)
        if function is None:
            return []  # an operator's key: a fresh chain
        return [*self.inflight.chain(function), function]

    async def route(self, source: str, record: dict[str, Any],
                    chain: list[str] | None = None) -> int:
        """Queue one event per matching configuration; return how many were queued."""
        bucket = record["s3"]["bucket"]["name"]
        rules = self.notifications.rules(source, bucket)
        if not rules:
            return 0
        key = unquote_plus(record["s3"]["object"]["key"])
        queued = 0
        for rule in rules:
            if not rule.matches(record["eventName"], key):
                continue
            if rule.function not in self.registry.functions:
                log.warning("bucket %s (%s): notification %r names function %s, which does not "
                            "exist (any more); event for key %r skipped", bucket, source, rule.id,
                            rule.function, key)
                continue
            rec = {**record, "s3": {**record["s3"], "configurationId": rule.id}}
            # the event names its own idempotency key (also context.idempotency_key): the
            # same on every redelivery; parsers of S3's shape ignore the extra key
            ev_id = str(uuid.uuid4())
            payload = {"Records": [rec], "dayfly": {"idempotencyKey": ev_id}}
            await self.queue.put(rule.function, rule.qualifier, orjson.dumps(payload), "s3",
                                 chain=chain or [], event_id=ev_id)
            queued += 1
        return queued

    async def ingest(self, source: str, records: list[dict[str, Any]]) -> tuple[int, int]:
        """External records (already normalized): (records routable, events queued)."""
        routed = [r for r in records if routable(r)]
        queued = 0
        for r in routed:
            queued += await self.route(source, r)
        return len(routed), queued
