"""How long a caller refused with 429 should stay away: the Retry-After a full queue sends."""

from __future__ import annotations

import math
import time

MAX_RETRY_AFTER_S = 16


class Pressure:
    """Refusals and served invocations of one pool, counted per one-second window.

    Retry-After is 1 s plus the refusals of the last full second over the invocations served
    in it, rounded up, at most 16 s: when ten callers were refused for each one served, a
    refused caller hears to come back in eleven seconds, not one, so refused demand arrives
    spread over the time the pool needs to serve it instead of all coming back at once, and
    refusing costs the node a fraction of what serving does (the gateway holds each
    connection to what it was told: gateway/connections.py). Event loop only.
    """

    def __init__(self, now: float | None = None) -> None:
        self.start = time.monotonic() if now is None else now
        self.refused = self.served = 0
        self.last: tuple[int, int] = (0, 0)  # (refused, served) in the previous window

    def _roll(self, now: float) -> None:
        if now - self.start >= 1.0:
            self.last = (self.refused, self.served) if now - self.start < 2.0 else (0, 0)
            self.refused = self.served = 0
            self.start = now

    def note_served(self, now: float | None = None) -> None:
        self._roll(time.monotonic() if now is None else now)
        self.served += 1

    def note_refused(self, now: float | None = None) -> int:
        """Count one refusal; the Retry-After to send with it."""
        self._roll(time.monotonic() if now is None else now)
        self.refused += 1
        refused, served = self.last
        return min(MAX_RETRY_AFTER_S, 1 + math.ceil(refused / max(served, 1)))
