"""Assembles one dayfly node: database, registry, sandboxes, scheduler, records, queue."""

from __future__ import annotations

import asyncio
import logging
import os

from .cluster.wiring import Cluster, database, key_material, scheduler_advert
from .config import Settings
from .control.bucket_access import AccessStore
from .control.bundles import BundleStore
from .control.changes import follow
from .control.collector import Collector
from .control.deps import DepsInstaller
from .control.event_config import EventConfigs
from .control.functions import Functions
from .control.ingest_sources import IngestSources
from .control.isolation import ALLOW_ENV, ALLOW_FLAG
from .control.keys import KeyStore
from .control.model import function_arn
from .control.notifications import NotificationStore
from .control.registry import Registry
from .control.tokens import TokenStore
from .control.triggers import TriggerRegistry
from .gateway.s3.binding import BindingService
from .metrics.observer import Metrics
from .sandbox.gvisor import GvisorBackend
from .sandbox.linux.backend import LinuxBackend
from .sandbox.process import ProcessBackend, ZygoteBackend
from .sandbox.safe import SafeSandbox
from .scheduler.scheduler import Scheduler
from .stores.objects import ObjectStore
from .stores.records import RecordStore
from .triggers.async_invoke import AsyncDispatcher
from .triggers.buckets import BucketTriggers
from .triggers.causes import InFlight

log = logging.getLogger("dayfly")


# weakest first; the default tier is the last available one that is not opt-in only
BACKENDS: tuple[type[ZygoteBackend], ...] = (ProcessBackend, GvisorBackend, LinuxBackend)


def tier_report() -> list[dict]:
    """Every isolation tier, whether it works on this machine, and why (not)."""
    report = []
    for cls in BACKENDS:
        ok, why = cls.available()
        report.append({"name": cls.name, "available": ok, "why": why, "weak": cls.weak})
    usable = [r["name"] for r in report if r["available"] and r["name"] != "gvisor"]
    for r in report:
        r["default"] = bool(usable) and r["name"] == usable[-1]
    return report


def interpreter_report() -> list[dict[str, str | bool]]:
    """The Python interpreters functions can run on here, oldest first (for `dayfly doctor`)."""
    from .sandbox import lang
    return [{"runtime": i.runtime, "version": i.version, "path": i.executable,
             "default": i.runtime == lang.host_runtime()}
            for i in sorted(lang.interpreters().values(),
                            key=lambda i: tuple(int(x) for x in i.version.split(".")))]


def available_backends() -> dict[str, type[ZygoteBackend]]:
    """Isolation tiers that work on this machine, strongest last."""
    tiers: dict[str, type[ZygoteBackend]] = {}
    for cls in BACKENDS:
        ok, _why = cls.available()
        if ok:
            tiers[cls.name] = cls
    return tiers


class Platform:
    """Everything `dayfly up` runs, wired together; `start` and `stop` bracket its life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.ensure_dirs()
        tiers = available_backends()
        # gvisor is opt-in per function (slower starts); the default is the strongest other tier
        fast = [t for t in tiers if t != "gvisor"]
        self.default_isolation = settings.default_isolation or fast[-1]
        if self.default_isolation not in tiers:
            raise SystemExit(f"isolation tier '{self.default_isolation}' is not available here: "
                             f"{dict((r['name'], r['why']) for r in tier_report())[self.default_isolation]}")
        # the weak tier runs functions only if the operator allowed it at start: with
        # --allow-weak-isolation, or by choosing it as the default tier (--isolation process)
        chosen = settings.default_isolation
        allowed = settings.allow_weak_isolation or bool(chosen and tiers[chosen].weak)
        self.refused = frozenset(n for n, cls in tiers.items() if cls.weak and not allowed)
        # the one choice of backends (dayfly/cluster/wiring.py): nothing below asks the mode
        self.cluster = Cluster(settings, scheduler_advert(settings, lambda: self.scheduler))
        self.db = database(settings)
        self.sandboxes = {name: SafeSandbox(cls(settings.data_dir)) for name, cls in tiers.items()
                          if name not in self.refused}
        for sandbox in self.sandboxes.values():
            if isinstance(sandbox.backend, ZygoteBackend):
                sandbox.backend.zygote_idle_s = settings.zygote_idle_s
        self.records = RecordStore(self.db, max_records=settings.records_max,
                                   max_age_s=settings.records_max_age_s,
                                   flush_interval_s=settings.records_flush_s)
        self.inflight = InFlight()  # chains of causes of running invocations (loop detection)
        self.metrics = Metrics()  # counters for /metrics
        self.scheduler = Scheduler(self.sandboxes, [self.records, self.inflight, self.metrics],
                                   max_queue=settings.max_queue,
                                   queue_timeout_s=settings.queue_timeout_s)
        self.registry = Registry(self.db, settings.data_dir, settings.region,
                                 self.default_isolation, **key_material(settings))
        self.registry.endpoint = settings.endpoint
        self.shared_code = self.cluster.code()
        self.bundles = BundleStore(settings.data_dir, self.shared_code)
        self.deps = DepsInstaller(settings.data_dir, self.shared_code)
        prepare = self.cluster.prepare(self.bundles, self.deps)
        for sandbox in self.sandboxes.values():  # code deployed through another node: fetched
            sandbox.prepare = prepare
        grace = (settings.code_grace_s if settings.code_grace_s is not None
                 else settings.zygote_idle_s + 60.0)
        self.collector = Collector(self.bundles, self.deps, self.registry, self.scheduler,
                                   grace_s=grace, interval_s=min(60.0, max(1.0, grace / 4)))
        self.functions = Functions(self.registry, self.bundles, self.deps, self.scheduler,
                                   set(self.sandboxes), self.refused, collector=self.collector)
        self.queue = self.cluster.queue(self.db)
        self.objects = ObjectStore(self.db, settings.data_dir, settings.region)
        self.cluster.share_objects(self.objects)  # object data shared by every node (cluster)
        self.keys = KeyStore(self.db)
        self.access = AccessStore(self.db)  # S3 bucket owners, ACLs, policies, CORS rules
        self.keys.derived = self.registry.function_keys.secret
        self.objects.sse_key = self.registry.function_keys.derive(b"sse-s3")
        self.tokens = TokenStore(self.db)  # API tokens (gateway/auth.py)
        self.ingest_sources = IngestSources(self.db)
        self.bucket_triggers = BucketTriggers(NotificationStore(self.db), self.queue,
                                              self.registry, self.registry.function_keys,
                                              self.inflight)
        self.objects.on_event = self.access.following(self.bucket_triggers.on_event)
        # bucket bindings: instances reach their declared buckets over their own channel
        bindings = BindingService(self.objects, self.registry.function_keys)
        for sandbox in self.sandboxes.values():
            if hasattr(sandbox.backend, "objects"):
                sandbox.backend.objects = bindings  # type: ignore[attr-defined]
            if hasattr(sandbox.backend, "function_s3"):  # where relays reach the S3 endpoint
                sandbox.backend.function_s3 = settings.function_s3  # type: ignore[attr-defined]
        self.event_configs = EventConfigs(self.db)
        self.dispatcher = AsyncDispatcher(self.queue, self.scheduler, self.registry.spec,
                                          self.arn, self.event_configs,
                                          max_chain_depth=settings.max_chain_depth,
                                          recorded=self.records.written)
        self.triggers = TriggerRegistry(self.db, self.registry, self.scheduler, self.queue,
                                        settings.region, self.records.written,
                                        leases=self.cluster.leases)
        self.membership = self.cluster.membership  # live nodes (GET /dayfly/v1/nodes)
        # sync invokes without room here go to a peer with room (cluster/forward.py)
        self.forwarder = self.cluster.forwarder(self.scheduler, self.metrics,
                                                settings.queue_timeout_s)
        self.records.node = self.cluster.node_id

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.settings.region, name, qualifier)

    async def start(self) -> None:
        await self.cluster.connect()
        await self.queue.start()
        await asyncio.to_thread(self.registry.load)
        await self.collector.start()  # before any instance: what a crash left is collected now
        await asyncio.to_thread(self.event_configs.load)
        await asyncio.to_thread(self.keys.bootstrap, self.settings.data_dir)
        await asyncio.to_thread(self.ingest_sources.load)
        buckets = {name for name, _ in await self.objects.list_buckets()}
        await asyncio.to_thread(self.bucket_triggers.notifications.load)
        await asyncio.to_thread(self.bucket_triggers.notifications.prune_local, buckets)
        self.scheduler.start()
        self.records.start()
        for spec in self.registry.all_specs():
            if spec.min_warm and spec.isolation in self.sandboxes:
                self.scheduler.deploy(spec)
        self._warn_refused()
        self.dispatcher.start()
        # take what other nodes change from now on (PostgreSQL notices; nothing on SQLite)
        await follow(self.db, (self.functions, self.registry.secrets, self.keys, self.access,
                               self.tokens,
                               self.ingest_sources, self.event_configs,
                               self.bucket_triggers.notifications, self.triggers))
        await self.cluster.start()
        self.forwarder.start()
        await self.triggers.start()
        weak = [n for n, sb in self.sandboxes.items() if sb.backend.weak]
        if self.default_isolation in self.refused:
            why = {r["name"]: r["why"] for r in tier_report()}
            log.warning("isolation: the default tier here would be '%s', which does not isolate "
                        "functions (linux tier: %s); functions on it are refused until this "
                        "node is started with %s (or %s=1)", self.default_isolation,
                        why.get("linux", "?"), ALLOW_FLAG, ALLOW_ENV)
        elif self.default_isolation in weak:
            why = {r["name"]: r["why"] for r in tier_report()}
            log.warning("isolation: '%s' tier in force — functions are NOT isolated from this "
                        "machine (no namespaces, no seccomp); only rlimits apply. "
                        "linux tier: %s", self.default_isolation, why.get("linux", "?"))
        elif getattr(self.sandboxes[self.default_isolation].backend, "rootless", False):
            backend = self.sandboxes[self.default_isolation].backend
            limits = ("cgroups in the delegated DAYFLY_CGROUP_PARENT"
                      if getattr(backend, "cgroups", None) is not None else
                      "no cgroups (memory and processes bounded by rlimits, no CPU share; "
                      "delegate one with DAYFLY_CGROUP_PARENT)")
            log.warning("isolation: '%s' tier running rootless — namespaces and seccomp as "
                        "usual, %s, and every instance runs as uid %d on the host; run as root "
                        "for dedicated uids", self.default_isolation, limits, os.getuid())

    def _warn_refused(self) -> None:
        """Name the functions stored on a tier this start did not allow (they fail until then)."""
        stranded = sorted({spec.name for spec in self.registry.all_specs()
                           if spec.isolation in self.refused})
        if stranded:
            log.warning("isolation: %s configured for the weak tier, which this node was not "
                        "started to allow; their invocations fail until it is started with %s",
                        ", ".join(stranded), ALLOW_FLAG)

    async def stop(self) -> None:
        await self.forwarder.close()
        await self.cluster.leave()  # other nodes stop counting on this one at once
        await self.db.stop_listening()  # no other node's change reloads what is stopping
        await self.collector.close()
        await self.triggers.stop()
        await self.dispatcher.close()
        await self.scheduler.close()
        await self.records.close()
        await self.queue.close()
        await self.objects.removals()  # replaced blobs (a shared store's too) are gone first
        await self.cluster.close()
        self.db.close()
