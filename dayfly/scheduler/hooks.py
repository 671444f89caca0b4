"""Cross-cutting concerns (records, logs, metrics) hook into the scheduler here."""

from __future__ import annotations

from ..types import FunctionSpec, InvokeRequest, InvokeResult


class Observer:
    """No-op base; subclasses override what they need. Called on the event loop: never block."""

    def before_invoke(self, spec: FunctionSpec, req: InvokeRequest) -> None:
        """An invocation is about to be admitted (followed by after_invoke, after_throttle or
        after_abandon)."""

    def after_invoke(self, spec: FunctionSpec, req: InvokeRequest, result: InvokeResult,
                     start: float, end: float) -> None:
        """One invocation finished (successfully or not); `start`/`end` are epoch seconds."""

    def after_throttle(self, spec: FunctionSpec, req: InvokeRequest) -> None:
        """An invocation was refused with 429."""

    def after_abandon(self, spec: FunctionSpec, req: InvokeRequest) -> None:
        """The caller hung up while the invocation was queued; it never ran."""
