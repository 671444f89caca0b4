"""The metrics observer: O(1) counter and histogram updates per invocation, on the event loop.

No locks (everything runs on the one event loop thread) and no I/O; `/metrics` reads these
dicts when it is scraped.
"""

from __future__ import annotations

from bisect import bisect_left

from ..scheduler.hooks import Observer
from ..stores.records import invocation_status
from ..types import FunctionSpec, InvokeRequest, InvokeResult

# seconds: from a warm no-op (~0.2 ms) to Lambda's longest timeout
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0, 300.0, 900.0)


class Histogram:
    """Counts per bucket (not cumulative: made cumulative when rendered), sum and count."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs, ending with +Inf."""
        out, total = [], 0
        for bound, n in zip((*(f"{b:g}" for b in BUCKETS), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class Metrics(Observer):
    """Counters by label tuple. Series of deleted functions stay until restart (counters)."""

    def __init__(self) -> None:
        self.invocations: dict[tuple[str, str, str], int] = {}  # (function, version, status)
        self.durations: dict[tuple[str, str], Histogram] = {}  # handler duration, seconds
        self.init_durations: dict[tuple[str, str], Histogram] = {}  # cold starts only
        self.cold_starts: dict[tuple[str, str], int] = {}
        # requests throttled (a caller's 429; a queued event or batch once, however long it
        # waits), and the further throttled tries of queued work that waits its turn
        self.throttles: dict[tuple[str, str], int] = {}
        self.throttle_retries: dict[tuple[str, str], int] = {}
        self.s3_requests: dict[tuple[str, str], int] = {}  # (operation, HTTP status)
        self.http_requests: dict[tuple[str, str, str], int] = {}  # (function, route, status)
        self.forwards: dict[tuple[str, str], int] = {}  # sync invokes sent to (peer, outcome)

    def after_invoke(self, spec: FunctionSpec, req: InvokeRequest, result: InvokeResult,
                     start: float, end: float) -> None:
        fv = (spec.name, spec.version)
        key = (spec.name, spec.version, "success" if result.error_type is None
               else invocation_status(result))
        self.invocations[key] = self.invocations.get(key, 0) + 1
        hist = self.durations.get(fv)
        if hist is None:
            hist = self.durations[fv] = Histogram()
        hist.observe(result.duration_ms / 1000)
        if result.cold:
            self.cold_starts[fv] = self.cold_starts.get(fv, 0) + 1
            init = self.init_durations.get(fv)
            if init is None:
                init = self.init_durations[fv] = Histogram()
            init.observe((result.fork_ms + result.init_ms) / 1000)

    def after_throttle(self, spec: FunctionSpec, req: InvokeRequest) -> None:
        fv = (spec.name, spec.version)
        counts = self.throttle_retries if req.throttled else self.throttles
        counts[fv] = counts.get(fv, 0) + 1

    def s3_request(self, operation: str, status: int) -> None:
        key = (operation, str(status))
        self.s3_requests[key] = self.s3_requests.get(key, 0) + 1

    def http_request(self, function: str, route: str, status: int) -> None:
        """A request a route or function URL answered (gateway/routes.py)."""
        key = (function, route, str(status))
        self.http_requests[key] = self.http_requests.get(key, 0) + 1

    def forwarded(self, peer: str, outcome: str) -> None:
        """A sync invoke this node forwarded to `peer` (cluster/forward.py) ended: ok,
        function_error, throttled, http_<status>, failed (no answer), or unreachable or
        not_found (the peer did not know the function yet): run here instead."""
        key = (peer, outcome)
        self.forwards[key] = self.forwards.get(key, 0) + 1
