"""Paced teardown: idle instances are killed a few at a time, never thousands at once.

An instance's death is kernel work on the cores everyone shares: its address space, and its
user, pid, mount, IPC, UTS and network namespaces (the last freed by one kernel worker that
serialises every namespace's cleanup). Killing thousands at once (a scale to zero, the platform
stopping) made them all runnable together: load average 100-200 for two minutes, with starts
and invocations queued behind them (issue 18). Here at most `limit` instances are killed and
not yet reaped at any time; the next is killed when one is reaped, so the pace follows what the
kernel actually gets done, not a timer. Instances waiting their turn are idle (frozen, in the
linux tier): they hold memory and their slot a little longer, and use no CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable

from ..background import spawn

log = logging.getLogger("dayfly.teardown")

# killed and not yet reaped, at most. A death is mostly waiting (RCU grace periods of its
# namespaces' teardown, in D state, counted in the load average), ~20 ms each here: 8 per core
# tore 600 instances down at ~400/s on 2 vCPUs with no stall (docs/SPECIFICATION.md, issue 18)
IN_FLIGHT = max(4, 8 * (os.cpu_count() or 2))
REAP_TIMEOUT_S = 30.0  # a kill whose death is not heard of by then frees its place anyway


class Teardown:
    """A queue of kills: `submit` one (it is run when its turn comes), `drain` to wait for all.

    Guarded by the event loop: `queue`, `in_flight`, `most`."""

    def __init__(self, limit: int = IN_FLIGHT) -> None:
        self.limit = limit
        self.queue: deque[Callable[[], Awaitable[asyncio.Future]]] = deque()
        self.in_flight = 0
        self.most = 0  # the highest in_flight seen (benchmarks and tests read it)
        self.done = 0
        self._idle: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self.queue) + self.in_flight

    def submit(self, kill: Callable[[], Awaitable[asyncio.Future]]) -> None:
        """`kill()` kills one instance and returns a future done once it has been reaped."""
        self.queue.append(kill)
        self._pump()

    def _pump(self) -> None:
        while self.queue and self.in_flight < self.limit:
            kill = self.queue.popleft()
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            spawn(self._one(kill))

    async def _one(self, kill: Callable[[], Awaitable[asyncio.Future]]) -> None:
        try:
            death = await kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(death), REAP_TIMEOUT_S)
        except Exception:  # one that cannot be killed must not stop the others
            log.exception("killing an instance failed")
        finally:
            self.in_flight -= 1
            self.done += 1
            self._pump()
            if not self and self._idle is not None:
                self._idle.set()

    async def drain(self) -> None:
        """Return once every submitted kill has been done and its instance reaped."""
        while self:
            self._idle = asyncio.Event()
            await self._idle.wait()
