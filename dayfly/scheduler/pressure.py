"""How long a caller refused with 429 should stay away: the Retry-After a full queue sends."""

from __future__ import annotations

import math
import time

MAX_RETRY_AFTER_S = 16


class Pressure:
    """Refusals and served invocations of one pool, counted per one-second window.

    Retry-After is 1 s plus the time the pool needs to serve the callers refused so far: the
    refusals of the last full second (or of this one, if more) over the invocations served per
    second (the last full second's, else this one's so far), rounded up, at most 16 s. When ten
    callers are refused for each one served, a refused caller hears to come back in eleven
    seconds, not one, so refused demand comes back spread over the time the pool needs to
    serve it instead of all at once, and refusing costs the node a fraction of what serving
    does; a burst gets longer answers within its first second. The gateway holds each
    connection to what it was told (gateway/connections.py). Event loop only.
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
        now = time.monotonic() if now is None else now
        self._roll(now)
        last_refused, last_served = self.last
        backlog = max(last_refused, self.refused)  # refused before this one
        self.refused += 1
        rate = last_served or self.served / max(now - self.start, 0.05)
        return min(MAX_RETRY_AFTER_S, 1 + math.ceil(backlog / max(rate, 1.0)))
