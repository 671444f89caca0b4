"""How every send is made: a per-target rate limit and retries with backoff inside the
invocation's remaining time. A send that still fails makes the invocation fail, so the
platform's durable retry (async invokes, bucket and table events) takes over from there."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeliveryError(Exception):
    """A notification could not be delivered; `retryable` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class RateLimiter:
    """A token bucket: `rate` sends per second, bursts of up to max(1, rate)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = threading.Lock()  # guards tokens and stamp

    def wait(self, deadline: float) -> None:
        """Take one token, sleeping until there is one; DeliveryError if not before deadline."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            delay = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            if now + delay > deadline:
                raise DeliveryError(f"rate limit ({self.rate:g}/s) leaves no time for this send "
                                    "before the function's timeout")
            self.tokens -= 1  # may go negative: later callers wait for what this one took
        if delay:
            time.sleep(delay)


def attempt(send: Callable[[], T], retries: int, backoff: float, deadline: float,
            limiter: RateLimiter | None = None) -> T:
    """send(), again after backoff * 2^n (with jitter) while it fails retryably and time is
    left; the last error is raised."""
    n = 0
    while True:
        if limiter is not None:
            limiter.wait(deadline)
        try:
            return send()
        except DeliveryError as exc:
            if not exc.retryable or n >= retries:
                raise
            delay = exc.retry_after if exc.retry_after is not None else \
                backoff * 2 ** n * (0.75 + random.random() / 2)
            if time.monotonic() + delay >= deadline:
                raise
            time.sleep(delay)
            n += 1
