"""NATS for tests and benchmarks: the machine's server ($DAYFLY_TEST_NATS or 127.0.0.1:4222),
whether it answers, and the clean-up of what one cluster name made there.

    require_nats()          # skips the test (fails in strict mode) when NATS is unreachable
    drop_nats("t1a2b3")     # every stream, KV bucket and object store of cluster t1a2b3

A cluster's names are `{name}_{kind}` (dayfly/cluster/nats.py); a KV bucket's stream adds
`KV_`, an object store's `OBJ_`. benchmarks/ imports this module too (tests/ on sys.path).
"""

from __future__ import annotations

import asyncio
import os

NATS_URL = os.environ.get("DAYFLY_TEST_NATS", "nats://127.0.0.1:4222")


def nats_unreachable(url: str = NATS_URL) -> str | None:
    """Why NATS with JetStream cannot be used at `url`, or None when it can."""
    import nats

    async def probe() -> None:
        nc = await asyncio.wait_for(nats.connect(url, allow_reconnect=False,
                                                 connect_timeout=3), 5)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()
    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"NATS with JetStream unreachable at {url}: {exc or type(exc).__name__}"
    return None


def require_nats() -> None:
    """Skip the calling test (a failure in strict mode) when NATS is unreachable."""
    import pytest

    reason = nats_unreachable()
    if reason:
        pytest.skip(reason)


def drop_nats(prefix: str, url: str = NATS_URL) -> list[str]:
    """Delete every stream (KV buckets and object stores are streams too) of cluster `prefix`;
    the names deleted."""
    import nats

    async def drop() -> list[str]:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=3)
        try:
            js = nc.jetstream()
            gone = []
            for info in await js.streams_info():
                name = info.config.name
                if any(name.startswith(p) for p in (f"{prefix}_", f"KV_{prefix}_",
                                                    f"OBJ_{prefix}_")):
                    await js.delete_stream(name)
                    gone.append(name)
            return gone
        finally:
            await nc.close()
    return asyncio.run(drop())

