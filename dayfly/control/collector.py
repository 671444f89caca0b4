"""Disk collection: code bundles, unpacked code and dependencies that nothing refers to any more.

What refers to a bundle (`bundles/<sha>.zip` + `code/<sha>/`) or a dependency set
(`deps/<key>/`):

1. $LATEST and every published version in the registry (aliases point at versions);
2. a deploy in progress, from before it writes anything until its version is registered
   (a `Claim`: the deploy stored a bundle, but no version names it yet);
3. every pool the scheduler still has, current or draining with instances left: a deleted
   version's instances finish their work with their code in place.

Zygotes outlive their last instance (up to the sandboxes' zygote idle time) and keep the
code folder mounted, so an unreferenced entry is removed only once it has stayed
unreferenced for `grace_s`; otherwise a re-upload of the same code under the same name
could meet a zygote still holding the removed folder. At start nothing runs yet, so the
first pass removes every unreferenced entry at once (what a crash or kill -9 left).

Only this node's disk is collected: copies in the store shared by every node
(shared_code.py) are never deleted here, referenced or not, so another node can always fetch
what its registry names; removing shared copies nothing references is left to a cluster-wide
collection (not built yet). A local copy collected here is fetched again if needed.

Ordering: deciding and setting aside happen on the event loop in one step with no await
(a claim is always taken on the loop before a deploy writes), so a deploy either claims
first (and its entry is kept) or finds the entry gone (and unpacks it anew). Only the
set-aside trash is removed in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..scheduler.scheduler import Scheduler
from .bundles import BundleStore
from .deps import DepsInstaller
from .layers import Layers
from .registry import Registry

log = logging.getLogger("dayfly.collector")

Key = tuple[str, str]  # ("code", sha256 hex) or ("deps", deps key)


class Claim:
    """What one deploy in progress holds; released when the deploy ends, however it ends."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector
        self.keys: list[Key] = []

    def code(self, hexdigest: str) -> None:
        self._add(("code", hexdigest))

    def deps(self, key: str) -> None:
        self._add(("deps", key))

    def _add(self, key: Key) -> None:
        self.keys.append(key)
        self._collector._claims[key] += 1


class Collector:
    """Finds what is unreferenced and removes it once nothing can still be using it."""

    layers: Layers | None = None  # layer versions' bundles are kept while stored (Functions)

    def __init__(self, bundles: BundleStore, deps: DepsInstaller, registry: Registry,
                 scheduler: Scheduler, *, grace_s: float, interval_s: float) -> None:
        self.bundles = bundles
        self.deps = deps
        self.registry = registry
        self.scheduler = scheduler
        self.grace_s = grace_s
        self.interval_s = interval_s
        # touched only on the event loop, never across an await: no lock needed
        self._claims: Counter[Key] = Counter()
        self._unused_since: dict[Key, float] = {}
        self._sweeping = asyncio.Lock()  # one thread removes trash at a time
        self._task: asyncio.Task | None = None

    @contextlib.contextmanager
    def claim(self) -> Iterator[Claim]:
        """Keep what a deploy stores until the deploy is over (its version registered, or not)."""
        c = Claim(self)
        try:
            yield c
        finally:
            for key in c.keys:
                self._claims[key] -= 1
                if self._claims[key] <= 0:
                    del self._claims[key]

    def referenced(self) -> set[Key]:
        """Everything something still refers to (the numbered list in the module docstring)."""
        keys: set[Key] = set(self._claims)
        for st in self.registry.functions.values():
            for cfg in (st.latest, *st.versions.values()):
                keys.add(("code", cfg.code_hex))
                keys.update(("code", layer["hex"]) for layer in cfg.layers)
                if cfg.deps_key:
                    keys.add(("deps", cfg.deps_key))
        # a draining pool with no instance and no waiter can never run again (it starts none)
        draining = [p for p in self.scheduler.draining if p.size or p.waiters]
        for pool in (*self.scheduler.current.values(), *draining):
            keys.add(("code", Path(pool.spec.code_dir).name))
            keys.update(("code", Path(d).name) for d in pool.spec.layers)
            if pool.spec.deps_dir:
                keys.add(("deps", Path(pool.spec.deps_dir).name))
        if self.layers is not None:
            keys.update(("code", h) for h in self.layers.code_hexes())
        return keys

    async def collect(self, *, grace_s: float | None = None) -> list[Key]:
        """One pass: set aside what has been unreferenced for the grace time, then remove it."""
        stored = await asyncio.to_thread(self._stored)
        # from here to the renames: no await, so no claim can slip in between
        grace = self.grace_s if grace_s is None else grace_s
        now = time.monotonic()
        used = self.referenced()
        gone: list[Key] = []
        for key in stored:
            if key in used:
                self._unused_since.pop(key, None)
                continue
            since = self._unused_since.setdefault(key, now)
            if now - since >= grace:
                (self.bundles if key[0] == "code" else self.deps).discard(key[1])
                self._unused_since.pop(key, None)
                gone.append(key)
        for key in set(self._unused_since) - stored:
            del self._unused_since[key]
        async with self._sweeping:
            await asyncio.to_thread(self._remove_trash)
        if gone:
            log.info("collected %d unreferenced bundle(s) and dependency set(s): %s", len(gone),
                     ", ".join(f"{kind}/{name[:12]}" for kind, name in sorted(gone)))
        return gone

    async def start(self) -> None:
        """At start (nothing runs yet): remove crash leftovers, then collect now and every
        `interval_s` (what was deferred for a draining pool or a zygote's grace)."""
        await asyncio.to_thread(self._clean_tmp)
        await self.collect(grace_s=0)
        self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.collect()
            except Exception:
                log.exception("disk collection failed")

    def _stored(self) -> set[Key]:
        return ({("code", n) for n in self.bundles.stored()}
                | {("deps", n) for n in self.deps.stored()})

    def _remove_trash(self) -> None:
        self.bundles.remove_trash()
        self.deps.remove_trash()

    def _clean_tmp(self) -> None:
        self.bundles.clean_tmp()
        self.deps.clean_tmp()
