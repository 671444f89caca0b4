"""What each function is running on behalf of: the chains of causes of its in-flight
invocations, so a write signed by a function's key can extend the right chain (loop detection).

A write cannot be tied to one invocation (instances share the function's key), so the longest
chain in flight is taken: loops are stopped no later than the limit, never missed.
"""

from __future__ import annotations

import time

from ..scheduler.hooks import Observer
from ..types import FunctionSpec, InvokeRequest, InvokeResult

GRACE_S = 60.0  # beyond the function's timeout: an entry whose end was never heard of expires


class InFlight(Observer):
    """A scheduler observer: function → {request: (chain, expiry)}; O(1) per invocation."""

    def __init__(self) -> None:
        self._running: dict[str, dict[int, tuple[list[str], float]]] = {}

    def before_invoke(self, spec: FunctionSpec, req: InvokeRequest) -> None:
        expiry = time.monotonic() + spec.limits.timeout_s + GRACE_S
        self._running.setdefault(spec.name, {})[id(req)] = (req.chain, expiry)

    def after_invoke(self, spec: FunctionSpec, req: InvokeRequest, result: InvokeResult,
                     start: float, end: float) -> None:
        self._end(spec.name, req)

    def after_throttle(self, spec: FunctionSpec, req: InvokeRequest) -> None:
        self._end(spec.name, req)

    def after_abandon(self, spec: FunctionSpec, req: InvokeRequest) -> None:
        self._end(spec.name, req)

    def _end(self, name: str, req: InvokeRequest) -> None:
        running = self._running.get(name)
        if running is not None:
            running.pop(id(req), None)
            if not running:
                del self._running[name]

    def chain(self, name: str) -> list[str]:
        """The longest chain of causes among `name`'s in-flight invocations ([] if none)."""
        running = self._running.get(name)
        if not running:
            return []
        now = time.monotonic()
        for rid in [r for r, (_, exp) in running.items() if exp < now]:
            del running[rid]
        return max((c for c, _ in running.values()), key=len, default=[])
