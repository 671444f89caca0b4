"""An in-memory sandbox backend: handlers are plain Python callables, no processes.

Lets scheduler logic (single flight, queueing, reaping) be tested deterministically, and
lets users test code that drives dayfly without starting instances.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..sandbox.base import Backend, InitFailed, Instance, InstanceDied, InstanceStats
from ..types import FunctionSpec, InvokeRequest, InvokeResult

Handler = Callable[[Any, InvokeRequest], Awaitable[Any]]


class StubBackend(Backend):
    """Handlers by name (`spec.handler`); `start_delay_s` simulates init time."""

    name = "stub"

    def __init__(self, handlers: dict[str, Handler] | None = None,
                 start_delay_s: float = 0.0) -> None:
        self.handlers = dict(handlers or {})
        self.start_delay_s = start_delay_s
        self.starts = 0
        self.killed: list[str] = []
        self.live: dict[str, Instance] = {}
        self.ends: dict[str, asyncio.Future] = {}  # instance id -> done when it has ended
        self._pids = itertools.count(1000)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, "in-memory"

    async def start(self, spec: FunctionSpec, instance_id: str) -> Instance:
        self.starts += 1
        await asyncio.sleep(self.start_delay_s)
        if spec.handler not in self.handlers:
            raise InitFailed({"errorType": "Runtime.HandlerNotFound",
                              "errorMessage": f"no stub handler {spec.handler}", "stackTrace": []})
        inst = Instance(id=instance_id, spec=spec, pid=next(self._pids))
        self.live[instance_id] = inst
        self.ends[instance_id] = asyncio.get_running_loop().create_future()
        return inst

    def ended(self, inst: Instance) -> asyncio.Future:
        return self.ends[inst.id]

    def end(self, instance_id: str) -> None:
        """The instance ends by itself, as one killed from outside (kill -9, the OOM killer)."""
        self.live.pop(instance_id, None)
        if not self.ends[instance_id].done():
            self.ends[instance_id].set_result(None)

    async def invoke(self, inst: Instance, req: InvokeRequest) -> InvokeResult:
        if inst.id not in self.live:
            raise InstanceDied("Runtime exited with error: killed")
        try:
            out = await self.handlers[inst.spec.handler](json.loads(req.payload), req)
        except InstanceDied:
            self.live.pop(inst.id, None)
            raise
        except Exception as exc:  # a function error, as the real runtime reports it
            body = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                               "stackTrace": []}).encode()
            return InvokeResult(body, "Unhandled", instance_id=inst.id)
        return InvokeResult(json.dumps(out).encode(), instance_id=inst.id)

    async def kill(self, inst: Instance) -> None:
        if self.live.pop(inst.id, None) is not None:
            self.killed.append(inst.id)
        self.end(inst.id)

    def stats(self, inst: Instance) -> InstanceStats:
        return InstanceStats()

    async def close(self) -> None:
        for inst in list(self.live.values()):
            await self.kill(inst)
