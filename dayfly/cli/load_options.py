"""`dayfly up`'s options for slow clients and overload: read timeouts, connection caps, queues."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from ..gateway.connections import Limits

_OPTIONS = [
    click.option("--header-timeout", default=10.0, show_default=True,
                 type=click.FloatRange(0.1, 3600), metavar="SECONDS",
                 help="Close a connection (408) whose request headers are not complete by "
                      "then."),
    click.option("--body-timeout", default=30.0, show_default=True,
                 type=click.FloatRange(0.1, 3600), metavar="SECONDS",
                 help="Close a connection (408) whose request body stalls this long."),
    click.option("--max-connections", default=0, show_default=True,
                 type=click.IntRange(0, 10_000_000), metavar="N",
                 help="Open connections at most [0: half the open-files limit, the other half "
                      "(at least 256) kept for the platform]; at the limit the connection waiting "
                      "longest for headers is closed, else the new one gets 503."),
    click.option("--max-connections-per-client", default=256, show_default=True,
                 type=click.IntRange(0, 10_000_000), metavar="N",
                 help="Open connections per client address (IPv6: per /64) at most; more are "
                      "refused with 429. 0: no limit."),
    click.option("--max-queue", default=256, show_default=True, type=click.IntRange(0, 100_000),
                 metavar="N",
                 help="Requests a function version keeps waiting for a busy instance; the next "
                      "one gets 429 with Retry-After at once."),
    click.option("--queue-timeout", default=10.0, show_default=True,
                 type=click.FloatRange(0.1, 3600), metavar="SECONDS",
                 help="A queued request waits this long for an instance, then gets 429."),
]


@dataclass(slots=True)
class LoadOptions:
    """The options above, as `up` receives them."""

    limits: Limits
    max_queue: int
    queue_timeout_s: float


def load_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options to a click command; it receives them as one `load: LoadOptions`."""
    @functools.wraps(fn)
    def wrapper(*args: Any, header_timeout: float, body_timeout: float, max_connections: int,
                max_connections_per_client: int, max_queue: int, queue_timeout: float,
                **kwargs: Any) -> Any:
        limits = Limits(header_timeout_s=header_timeout, body_timeout_s=body_timeout,
                        max_connections=max_connections, per_client=max_connections_per_client)
        return fn(*args, load=LoadOptions(limits, max_queue, queue_timeout), **kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper
