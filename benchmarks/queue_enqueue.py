"""How fast one node accepts Event invokes into its durable queue: JetStreamQueue (cluster
mode) beside the SQLite EventQueue (one node), same run, same events, on uvloop as `dayfly up`.

    python benchmarks/queue_enqueue.py [--events 20000] [--concurrency 256] [--nats URL]

An event counts as accepted when `put` returned, i.e. after JetStream's PubAck (or SQLite's
commit): what the gateway waits for before its 202. `--concurrency` puts are in flight at
once, as under many clients. Then the same events are drained (take a batch, ack each) to show
the delivery side. The JetStream run uses its own stream prefix and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import uvloop

from dayfly.stores.db import Database
from dayfly.stores.queue import EventQueue, Queue


async def enqueue(q: Queue, n: int, concurrency: int) -> float:
    """Events accepted per second with `concurrency` puts in flight."""
    payloads = [orjson.dumps({"order": i, "item": "book", "qty": 1}) for i in range(n)]
    it = iter(payloads)

    async def client() -> None:
        for body in it:
            await q.put("orders", None, body, "event")
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def drain(q: Queue, n: int, batch: int = 64) -> float:
    """Events taken and acked per second, `batch` at a time (the dispatcher's max_in_flight)."""
    done = 0
    t0 = time.perf_counter()
    while done < n:
        events = await q.take(batch, 1.0)
        if not events:
            raise RuntimeError(f"queue ran dry after {done} of {n} events")
        await asyncio.gather(*(q.ack(ev) for ev in events))
        done += len(events)
    return n / (time.perf_counter() - t0)


async def run_sqlite(n: int, concurrency: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "q.db")
        try:
            q = EventQueue(db)
            put_rate = await enqueue(q, n, concurrency)
            assert await q.depth() == n
            return put_rate, await drain(q, n)
        finally:
            db.close()


async def run_jetstream(url: str, n: int, concurrency: int) -> tuple[float, float]:
    import nats

    from dayfly.stores.jsqueue import JetStreamQueue
    nc = await nats.connect(url)
    q = JetStreamQueue(nc.jetstream(), f"bench_{uuid.uuid4().hex[:8]}")
    try:
        await q.start()
        put_rate = await enqueue(q, n, concurrency)
        assert await q.depth() == n
        return put_rate, await drain(q, n)
    finally:
        await q.delete()
        await nc.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = ap.parse_args()
    rows = [("JetStreamQueue", *await run_jetstream(args.nats, args.events, args.concurrency)),
            ("SQLite EventQueue", *await run_sqlite(args.events, args.concurrency))]
    print(f"{args.events} Event invokes, {args.concurrency} puts in flight, one node\n")
    print("| queue | enqueue (accepted/s) | drain (take+ack/s) |")
    print("| --- | ---: | ---: |")
    for name, put_rate, drain_rate in rows:
        print(f"| {name} | {put_rate:,.0f} | {drain_rate:,.0f} |")


if __name__ == "__main__":
    uvloop.run(main())
