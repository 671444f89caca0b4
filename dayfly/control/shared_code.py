"""Code bundles and built dependencies shared by every node: the seam, and its two backends.

Both are content-addressed: a bundle is named by the SHA-256 of its zip (`code/<hex>`), a
dependency set by its key, the hash of its requirements and Python (`deps/<key>`, a tar of the
installed tree). The node that deploys stores both before the deploy returns
(BundleStore.store, DepsInstaller.install); another node fetches one the first time a cold
start needs it (`OnDisk`, the sandboxes' `prepare` hook), checks it, and from then on serves it
from its own disk like code it deployed itself.

- `SharedCode`: one node; nothing is shared, nothing is ever fetched.
- `JetStreamCode`: a JetStream object store (`{cluster}_code`); a fetch is verified against
  the SHA-256 the object's meta message names, and a bundle again against its own name.

Shared copies are never deleted here or by the collector (which removes local copies only):
an unreferenced shared copy stays until a cluster-wide collection exists (not yet).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from nats.aio.client import Client

from ..stores.jsobjects import ObjectMissing, Objects

if TYPE_CHECKING:
    from ..types import FunctionSpec
    from .bundles import BundleStore
    from .deps import DepsInstaller


class CodeMissing(Exception):
    """A function's code or dependencies are on no node's disk and not in the shared store."""


class SharedCode:
    """One node: nothing shared."""

    def __init__(self) -> None:
        self.fetches: Counter[str] = Counter()  # objects fetched, by name (tests, metrics)

    async def has(self, name: str) -> bool:
        """Whether every node can fetch `name` (one node: nothing to fetch, so yes)."""
        return True

    async def put(self, name: str, path: Path) -> None:
        """Make the file at `path` available to every node as `name` (once: names are
        content-addressed, so an existing object is kept)."""

    async def get(self, name: str, fd: int) -> bool:
        """Write object `name` into the open file `fd`; False if there is no such object."""
        return False


class JetStreamCode(SharedCode):
    """Objects in the JetStream object store `bucket`; `await start()` before use."""

    def __init__(self, nc: Client, bucket: str) -> None:
        super().__init__()
        self.objects = Objects(nc, bucket)

    async def start(self) -> None:
        await self.objects.create()

    async def has(self, name: str) -> bool:
        return await self.objects.info(name) is not None

    async def put(self, name: str, path: Path) -> None:
        if await self.objects.info(name) is None:
            await self.objects.put_file(name, path)

    async def get(self, name: str, fd: int) -> bool:
        try:
            await self.objects.get_file(name, fd)
        except ObjectMissing:
            return False
        self.fetches[name] += 1
        return True


class OnDisk:
    """A sandbox `prepare` hook: a spec's code and dependencies on this node's disk before an
    instance starts (a stat when they are there; a fetch, once, when they are not).

    The first start of each in this process also makes sure the shared store holds them
    (stored from here if not): so the throwaway instance a deploy starts to check the handler
    shares the code before the deploy returns even where the deploy stored it with `put`, and a
    shared store that lost an object gets it back from any node that has it."""

    def __init__(self, bundles: BundleStore, deps: DepsInstaller) -> None:
        self.bundles = bundles
        self.deps = deps
        self._shared: set[str] = set()  # code and deps known to be in the shared store

    async def __call__(self, spec: FunctionSpec) -> None:
        code = os.path.basename(spec.code_dir)
        if not await self.bundles.ensure(code):
            raise CodeMissing(f"the code of {spec.name} ({code[:12]}) is on no node")
        if code not in self._shared:
            await self.bundles.share(code)
            self._shared.add(code)
        if spec.deps_dir:
            key = os.path.basename(spec.deps_dir)
            if not await self.deps.ensure(key):
                raise CodeMissing(f"the dependencies of {spec.name} are on no node")
            if key not in self._shared:
                await self.deps.share(key)
                self._shared.add(key)
        for layer in spec.layers:  # layer versions are bundles too (control/layers.py)
            if not await self.bundles.ensure(os.path.basename(layer)):
                raise CodeMissing(f"a layer of {spec.name} is on no node")
