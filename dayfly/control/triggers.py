"""The registry of triggers: table event source mappings and schedules, persisted in SQLite,
mirrored in memory, and running (one consumer per enabled mapping, one schedule runner) while
the platform runs. Mutations are serialised by `_lock`; checkpoints are written per batch."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any

from ..cluster.leases import InProcessLeases, Leases
from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from ..scheduler.scheduler import Scheduler
from ..stores.db import Database
from ..stores.queue import Queue
from ..triggers.cron import parse_expression
from ..triggers.schedule import MISSED_POLICIES, Schedule, ScheduleRunner, iso_z, rule_arn
from ..triggers.tables.mapping import Consumer, Delivery, Mapping
from ..triggers.tables.source import SourceError, TableURL, open_source
from ..types import InvokeRequest, InvokeResult
from .changes import Background, OnChange, announced
from .esm import changed_mapping, mapping_json, new_mapping
from .model import function_arn
from .registry import Registry, split_name

log = logging.getLogger("dayfly.triggers")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS event_source_mappings (uuid TEXT PRIMARY KEY, function TEXT NOT "
    "NULL, config TEXT NOT NULL, checkpoint INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS schedules (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "function TEXT NOT NULL, config TEXT NOT NULL, last_fire REAL NOT NULL, created REAL NOT NULL)",
)
SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PREPARE_TIMEOUT_S = 30.0
# change notices (control/changes.py); checkpoints and last fires are not announced: only the
# node running a mapping or schedule writes them, and it re-reads them when it takes one over
MAPPING, SCHEDULE = "event_source_mapping", "schedule"  # keys: mapping UUID, schedule id
# leases (cluster/leases.py): the schedule runner, and each enabled mapping's consumer, run on
# one node at a time; taking one over re-reads last fires / the checkpoint from the database
SCHEDULES_LEASE = "schedules"


def mapping_lease(mapping_uuid: str) -> str:
    return f"mapping:{mapping_uuid}"


class TriggerRegistry:
    """Mappings by UUID (with checkpoints and consumers) and schedules by id."""

    def __init__(self, db: Database, registry: Registry, scheduler: Scheduler,
                 queue: Queue, region: str, recorded: Callable[[], Awaitable[None]],
                 leases: Leases | None = None) -> None:
        self.db = db
        self.leases = leases or InProcessLeases()
        self.registry = registry
        self.scheduler = scheduler
        self.region = region
        self.mappings: dict[str, Mapping] = {}
        self.checkpoints: dict[str, int] = {}
        self.keys: dict[str, str] = {}  # mapping uuid -> source key (the change log it reads)
        self.consumers: dict[str, Consumer] = {}
        self.schedules: dict[str, Schedule] = {}
        self.runner = ScheduleRunner(queue.put, self._save_fire, region,
                                     late_s=self.leases.handover_s)
        self.delivery = Delivery(invoke=self._invoke, enqueue=queue.put,
                                 save=self._save_checkpoint, recorded=recorded, arn=self._arn,
                                 region=region)
        self._lock = asyncio.Lock()
        self._started = False  # before start() read them, other nodes' changes are left to it
        self.reloads = Background()  # changes made through other nodes, being applied

    def _arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.region, name, qualifier)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        def load(conn: sqlite3.Connection) -> tuple[list, list]:
            for stmt in SCHEMA:
                conn.execute(stmt)
            return (conn.execute("SELECT * FROM event_source_mappings ORDER BY created").fetchall(),
                    conn.execute("SELECT * FROM schedules ORDER BY created").fetchall())
        async with self._lock:  # other nodes' changes wait, then re-read what they changed
            self._started = True
            mappings, schedules = await self.db.run(load)
            for row in mappings:
                m = _mapping_from_json(json.loads(row["config"]))
                self._remember(m, row["checkpoint"])
                if m.enabled:
                    await self._start_consumer(m)
            for row in schedules:
                s = Schedule(**json.loads(row["config"]), last_fire=row["last_fire"])
                self.schedules[s.id] = s
        await self.leases.hold(SCHEDULES_LEASE, self._take_schedules, self.runner.stop)

    async def stop(self) -> None:
        await self.leases.release(SCHEDULES_LEASE)
        await asyncio.gather(*(self._stop_consumer(u) for u in list(self.mappings)),
                             return_exceptions=True)

    async def _take_schedules(self) -> None:
        """This node runs the schedules now: from the last fires recorded (by any node)."""
        rows = await self.db.run(lambda c: c.execute(
            "SELECT id, last_fire FROM schedules").fetchall())
        for row in rows:
            s = self.schedules.get(row["id"])
            if s is not None:
                s.last_fire = max(s.last_fire, row["last_fire"])
        await self.runner.start(list(self.schedules.values()))

    # -- changes made through other nodes ----------------------------------------------------

    def listen(self, on_change: OnChange) -> None:
        """Take mappings and schedules changed through other nodes: the changed one is
        restarted or stopped here as a local write would (in the background: a local create
        may hold the lock while it reaches the source's database)."""
        on_change(MAPPING, lambda key: self.reloads.start(self._reload_mappings(key)))
        on_change(SCHEDULE, lambda key: self.reloads.start(self._reload_schedules(key)))

    async def _reload_mappings(self, mapping_uuid: str | None) -> None:
        where, args = (" WHERE uuid = ?", (mapping_uuid,)) if mapping_uuid else ("", ())
        async with self._lock:
            if not self._started:
                return
            rows = await self.db.run(lambda c: c.execute(
                "SELECT config, checkpoint FROM event_source_mappings" + where, args).fetchall())
            fresh = {m.uuid: (m, row["checkpoint"]) for row in rows
                     for m in [_mapping_from_json(json.loads(row["config"]))]}
            for gone in ({mapping_uuid} if mapping_uuid else set(self.mappings)) - set(fresh):
                if gone in self.mappings:  # its capture is removed by the node that deleted it
                    await self._stop_consumer(gone)
                    del self.mappings[gone], self.checkpoints[gone], self.keys[gone]
            for m, checkpoint in fresh.values():
                old = self.mappings.get(m.uuid)
                if old == m:
                    continue
                if old is not None:
                    await self._stop_consumer(m.uuid)
                    checkpoint = max(checkpoint, self.checkpoints[m.uuid])
                self._remember(m, checkpoint)
                if m.enabled:
                    await self._start_consumer(m)

    async def _reload_schedules(self, schedule_id: str | None) -> None:
        where, args = (" WHERE id = ?", (schedule_id,)) if schedule_id else ("", ())
        async with self._lock:
            if not self._started:
                return
            rows = await self.db.run(lambda c: c.execute(
                "SELECT config, last_fire FROM schedules" + where, args).fetchall())
            fresh = {s.id: s for s in (Schedule(**json.loads(row["config"]),
                                                last_fire=row["last_fire"]) for row in rows)}
            for gone in ({schedule_id} if schedule_id else set(self.schedules)) - set(fresh):
                if self.schedules.pop(gone, None) is not None:
                    self.runner.remove(gone)
            for s in fresh.values():
                old = self.schedules.get(s.id)
                if old is None or _schedule_config(old) != _schedule_config(s):
                    self.schedules[s.id] = s
                    self.runner.put(s)

    def _remember(self, m: Mapping, checkpoint: int) -> None:
        self.mappings[m.uuid] = m
        self.checkpoints[m.uuid] = checkpoint
        self.keys[m.uuid] = m.url.key

    async def _start_consumer(self, m: Mapping) -> None:
        """Consume the mapping's changes whenever this node holds its lease."""
        await self.leases.hold(mapping_lease(m.uuid), lambda: self._take_mapping(m.uuid),
                               lambda: self._drop_consumer(m.uuid))

    async def _take_mapping(self, mapping_uuid: str) -> None:
        """This node consumes the mapping now: from its checkpoint (written by any node)."""
        rows = await self.db.run(lambda c: c.execute(
            "SELECT checkpoint FROM event_source_mappings WHERE uuid = ?",
            (mapping_uuid,)).fetchall())
        m = self.mappings.get(mapping_uuid)
        if m is None or not rows or mapping_uuid in self.consumers:
            return
        # what this node last saw of it, if another node took it further since
        self.checkpoints[mapping_uuid] = max(rows[0]["checkpoint"],
                                             self.checkpoints.get(mapping_uuid, 0))
        consumer = Consumer(m, self.checkpoints[mapping_uuid], self.delivery)
        self.consumers[mapping_uuid] = consumer
        consumer.start()

    async def _drop_consumer(self, mapping_uuid: str) -> None:
        consumer = self.consumers.pop(mapping_uuid, None)
        if consumer is not None:
            await consumer.stop()
            self.checkpoints[mapping_uuid] = consumer.position

    async def _stop_consumer(self, mapping_uuid: str) -> Consumer | None:
        """Stop consuming here and give the lease up; the consumer that ran here, if any."""
        consumer = self.consumers.get(mapping_uuid)
        await self.leases.release(mapping_lease(mapping_uuid))
        return consumer

    # -- what consumers call -----------------------------------------------------------------

    async def _invoke(self, name: str, qualifier: str | None, payload: bytes,
                      key: str, throttled: int = 0) -> InvokeResult:
        spec = self.registry.spec(name, qualifier)
        req = InvokeRequest(request_id=str(uuid.uuid4()), payload=payload,
                            invoked_arn=self._arn(name, qualifier), trigger="table",
                            idempotency_key=key, throttled=throttled)
        return await self.scheduler.invoke(spec, req)

    async def _save_checkpoint(self, mapping_uuid: str, seq: int) -> int:
        """Persist a mapping's position; return what every reader of its table has passed."""
        await self.db.run(lambda c: c.execute(
            "UPDATE event_source_mappings SET checkpoint = ? WHERE uuid = ?", (seq, mapping_uuid)))
        self.checkpoints[mapping_uuid] = seq
        key = self.keys.get(mapping_uuid)
        return min((self.checkpoints[u] for u, k in self.keys.items() if k == key), default=seq)

    async def _save_fire(self, schedule_id: str, fire_time: float) -> None:
        # never backwards: a node that lost the lease a moment ago cannot undo a later fire
        await self.db.run(lambda c: c.execute(
            "UPDATE schedules SET last_fire = ? WHERE id = ? AND last_fire < ?",
            (fire_time, schedule_id, fire_time)))

    # -- event source mappings ---------------------------------------------------------------

    def get_mapping(self, mapping_uuid: str) -> Mapping:
        m = self.mappings.get(mapping_uuid)
        if m is None:
            raise ResourceNotFound(f"The resource you requested does not exist. (Event source "
                                   f"mapping {mapping_uuid})")
        return m

    def mapping_json(self, m: Mapping, consumer: Consumer | None = None) -> dict[str, Any]:
        consumer = consumer or self.consumers.get(m.uuid)
        health = consumer.health if consumer else (
            "disabled" if not m.enabled
            else "standby: another node consumes it" if self.leases.waiting(mapping_lease(m.uuid))
            else "starting" if m.uuid in self.mappings else "stopped")
        return mapping_json(m, region=self.region,
                            checkpoint=consumer.position if consumer else self.checkpoints[m.uuid],
                            health=health, last_result=consumer.last_result if consumer
                            else "No records processed")

    def list_mappings(self, function: str | None = None,
                      source: TableURL | None = None) -> list[Mapping]:
        name = split_name(function)[0] if function else None
        return [m for m in self.mappings.values()
                if (name is None or m.function == name)
                and (source is None or self.keys[m.uuid] == source.key)]

    def _check_functions(self, m: Mapping) -> None:
        self.registry.config(m.function, m.qualifier)
        if m.on_failure is not None:
            try:
                self.registry.config(*m.on_failure)
            except ResourceNotFound as exc:
                raise InvalidParameter(f"The on-failure destination does not exist: "
                                       f"{exc.message}") from None

    async def create_mapping(self, params: dict[str, Any]) -> Mapping:
        async with self._lock:
            m = new_mapping(params, str(uuid.uuid4()))
            self._check_functions(m)
            url = m.url
            for other in self.list_mappings(m.function, url):
                if other.qualifier == m.qualifier:
                    raise ResourceConflict(
                        f"The event source arn ({url.arn}) and function ({m.function}) provided "
                        f"mapping already exists. Please update or delete the existing mapping "
                        f"with UUID {other.uuid}")
            position = await self._prepare(url, m.starting_position)
            await self.db.run(announced(self.db, MAPPING, m.uuid, lambda c: c.execute(
                "INSERT INTO event_source_mappings(uuid, function, config, checkpoint, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (m.uuid, m.function, json.dumps(asdict(m)), position, m.created))))
            self._remember(m, position)
            if m.enabled:
                await self._start_consumer(m)
            log.info("mapping %s: %s -> %s from seq %d", m.uuid, url.masked, m.function, position)
            return m

    async def _prepare(self, url: TableURL, starting_position: str) -> int:
        """Check the source, install its capture, and return the starting checkpoint."""
        source = open_source(url)
        try:
            async def run() -> int:
                await source.open()
                await source.install()
                return await source.head() if starting_position == "LATEST" else 0
            return await asyncio.wait_for(run(), PREPARE_TIMEOUT_S)
        except SourceError as exc:
            raise InvalidParameter(f"Cannot capture changes of {url.masked}: {exc}") from None
        except TimeoutError:
            raise InvalidParameter(f"Cannot capture changes of {url.masked}: the database did not "
                                   f"answer within {PREPARE_TIMEOUT_S:g}s") from None
        finally:
            await source.close()

    async def update_mapping(self, mapping_uuid: str, params: dict[str, Any]) -> Mapping:
        async with self._lock:
            old = self.get_mapping(mapping_uuid)
            m = changed_mapping(replace(old), params)
            self._check_functions(m)
            m.modified = time.time()
            await self._stop_consumer(m.uuid)
            await self.db.run(announced(self.db, MAPPING, m.uuid, lambda c: c.execute(
                "UPDATE event_source_mappings SET function = ?, config = ? WHERE uuid = ?",
                (m.function, json.dumps(asdict(m)), m.uuid))))
            self.mappings[m.uuid] = m
            if m.enabled:
                await self._start_consumer(m)
            return m

    async def delete_mapping(self, mapping_uuid: str) -> dict[str, Any]:
        """Stop and forget a mapping; the last one on a table removes the table's capture."""
        async with self._lock:
            m = self.get_mapping(mapping_uuid)
            out = self.mapping_json(m, await self._stop_consumer(m.uuid))
            await self.db.run(announced(self.db, MAPPING, m.uuid, lambda c: c.execute(
                "DELETE FROM event_source_mappings WHERE uuid = ?", (m.uuid,))))
            key = self.keys.pop(m.uuid)
            del self.mappings[m.uuid]
            del self.checkpoints[m.uuid]
            out.update(State="Deleting", Health="deleted")
            if key not in self.keys.values():
                out["Dayfly"]["Cleanup"] = await self._uninstall(m.url)
            return out

    async def _uninstall(self, url: TableURL) -> str:
        source = open_source(url)
        try:
            await asyncio.wait_for(source.open(), PREPARE_TIMEOUT_S)
            await asyncio.wait_for(source.uninstall(), PREPARE_TIMEOUT_S)
            return "capture removed"
        except (SourceError, TimeoutError) as exc:
            log.warning("could not remove the change capture of %s: %s", url.masked, exc)
            return f"capture NOT removed: {exc or 'timed out'}"
        finally:
            await source.close()

    # -- schedules ---------------------------------------------------------------------------

    def get_schedule(self, id_or_name: str) -> Schedule:
        s = self.schedules.get(id_or_name) or next(
            (s for s in self.schedules.values() if s.name == id_or_name), None)
        if s is None:
            raise ResourceNotFound(f"Schedule not found: {id_or_name}")
        return s

    def schedule_json(self, s: Schedule) -> dict[str, Any]:
        nxt = self.runner.next_fire(s)
        return {"Id": s.id, "Name": s.name, "Arn": rule_arn(self.region, s.name),
                "FunctionName": s.function, "Qualifier": s.qualifier,
                "FunctionArn": self._arn(s.function, s.qualifier),
                "ScheduleExpression": s.expression, "Timezone": s.timezone,
                "MissedFirePolicy": s.missed, "State": "ENABLED" if s.enabled else "DISABLED",
                "LastFire": iso_z(s.last_fire) if s.last_fire > s.created else None,
                "NextFire": iso_z(nxt) if nxt is not None else None,
                "Created": s.created, "LastModified": s.modified}

    def _apply(self, s: Schedule, params: dict[str, Any]) -> Schedule:
        if params.get("FunctionName"):
            s.function, s.qualifier = split_name(params["FunctionName"], params.get("Qualifier"))
            self.registry.config(s.function, s.qualifier)
        for key, attr in (("ScheduleExpression", "expression"), ("Timezone", "timezone"),
                          ("MissedFirePolicy", "missed")):
            if params.get(key) is not None:
                if not isinstance(params[key], str):
                    raise InvalidParameter(f"{key} must be a string")
                setattr(s, attr, params[key])
        if s.missed not in MISSED_POLICIES:
            raise InvalidParameter(f"MissedFirePolicy must be one of {', '.join(MISSED_POLICIES)}")
        if params.get("State") is not None:
            if params["State"] not in ("ENABLED", "DISABLED"):
                raise InvalidParameter("State must be ENABLED or DISABLED")
            s.enabled = params["State"] == "ENABLED"
        parse_expression(s.expression, s.timezone, s.created)
        return s

    async def create_schedule(self, params: dict[str, Any]) -> Schedule:
        if not params.get("FunctionName"):
            raise InvalidParameter("FunctionName is required")
        if not params.get("ScheduleExpression"):
            raise InvalidParameter("ScheduleExpression is required")
        name = split_name(params["FunctionName"])[0]
        sched_name = params.get("Name") or f"{name}-{uuid.uuid4().hex[:8]}"
        if not isinstance(sched_name, str) or not SCHEDULE_NAME_RE.match(sched_name):
            raise InvalidParameter("Name must be 1-64 letters, digits, '.', '-' or '_'")
        now = time.time()
        s = self._apply(Schedule(id=str(uuid.uuid4()), name=sched_name, function=name,
                                 qualifier=None, expression="", created=now, modified=now,
                                 last_fire=now), params)
        async with self._lock:
            if any(o.name == s.name for o in self.schedules.values()):
                raise ResourceConflict(f"A schedule named {s.name} already exists")
            await self.db.run(announced(self.db, SCHEDULE, s.id, lambda c: c.execute(
                "INSERT INTO schedules(id, name, function, config, last_fire, created) VALUES "
                "(?, ?, ?, ?, ?, ?)", (s.id, s.name, s.function, _schedule_config(s), s.last_fire,
                                       s.created))))
            self.schedules[s.id] = s
            self.runner.put(s)
        return s

    async def update_schedule(self, id_or_name: str, params: dict[str, Any]) -> Schedule:
        async with self._lock:
            old = self.get_schedule(id_or_name)
            s = self._apply(replace(old), params)
            s.modified = s.last_fire = time.time()  # a changed schedule starts afresh
            await self.db.run(announced(self.db, SCHEDULE, s.id, lambda c: c.execute(
                "UPDATE schedules SET function = ?, config = ?, last_fire = ? WHERE id = ?",
                (s.function, _schedule_config(s), s.last_fire, s.id))))
            self.schedules[s.id] = s
            self.runner.put(s)
            return s

    async def delete_schedule(self, id_or_name: str) -> Schedule:
        async with self._lock:
            s = self.get_schedule(id_or_name)
            await self.db.run(announced(self.db, SCHEDULE, s.id, lambda c: c.execute(
                "DELETE FROM schedules WHERE id = ?", (s.id,))))
            del self.schedules[s.id]
            self.runner.remove(s.id)
            return s


def _mapping_from_json(data: dict[str, Any]) -> Mapping:
    if data.get("on_failure"):
        data["on_failure"] = tuple(data["on_failure"])
    return Mapping(**data)


def _schedule_config(s: Schedule) -> str:
    data = asdict(s)
    data.pop("last_fire")
    return json.dumps(data)
