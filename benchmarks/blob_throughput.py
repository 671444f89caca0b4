"""Blob PUT/GET throughput through the JetStream blob backend (cluster mode's S3 object data)
against writing/reading the same bytes as local files with Python, in the same run.

Rows: 4 KiB objects (ops/s, one at a time and --concurrency at once) and 64 / 256 MiB objects
(MiB/s). Columns: local files (write + fsync + rename; read), the file BlobStore (one node),
JetStream (PUT on node 1; GET on node 2: a first read fetches from JetStream, a second read
serves node 2's cache), and PostgreSQL large objects, the other engine reachable here
(lo_create + lo_put of 1 MiB pieces in one transaction; lo_get of 1 MiB pieces; one
connection per concurrent client, in threads). Node 2 has its own NATS connection. The
object store is created for the run and deleted afterwards (large objects are unlinked); the
JetStream limits a 256 MiB object meets are printed first.

Usage: python benchmarks/blob_throughput.py [--nats nats://127.0.0.1:4222] [--small 2000]
       [--concurrency 16] [--large-runs 3] [--dir /var/tmp]
       [--pg postgresql://postgres@127.0.0.1:5432/test | --pg ""]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import psycopg

from dayfly.stores.blobs import BlobStore
from dayfly.stores.jsblobs import JetStreamBlobStore
from dayfly.stores.jsobjects import CHUNK, Objects

MiB = 1024 * 1024


async def body(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), MiB):
        yield data[i:i + MiB]


def file_put(root: Path, data: bytes) -> str:
    name = secrets.token_hex(16)
    tmp, final = root / f"{name}.tmp", root / name
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, final)
    return name


def file_get(root: Path, name: str) -> int:
    n = 0
    with open(root / name, "rb") as f:
        while chunk := f.read(MiB):
            n += len(chunk)
    return n


async def store_get(store: BlobStore, blob_id: str) -> int:
    return sum([len(c) async for c in await store.open(blob_id)])


class LargeObjects:
    """PostgreSQL large objects, one connection per concurrent caller (psycopg is blocking)."""

    def __init__(self, dsn: str, conns: int) -> None:
        self.pool = [psycopg.connect(dsn) for _ in range(conns)]
        self.free = asyncio.Queue[psycopg.Connection]()
        for c in self.pool:
            self.free.put_nowait(c)

    async def _with(self, fn: Callable[[psycopg.Connection], int]) -> int:
        c = await self.free.get()
        try:
            return await asyncio.to_thread(fn, c)
        finally:
            self.free.put_nowait(c)

    async def put(self, data: bytes) -> int:
        def run(c: psycopg.Connection) -> int:
            with c.transaction():
                row = c.execute("SELECT lo_create(0)").fetchone()
                assert row is not None
                oid = int(row[0])
                for i in range(0, max(len(data), 1), MiB):
                    c.execute("SELECT lo_put(%s, %s, %s)", (oid, i, data[i:i + MiB]))
            return oid
        return await self._with(run)

    async def get(self, oid: int, size: int) -> int:
        def run(c: psycopg.Connection) -> int:
            n = 0
            with c.transaction():
                for i in range(0, size, MiB):
                    row = c.execute("SELECT lo_get(%s, %s, %s)", (oid, i, MiB)).fetchone()
                    assert row is not None
                    n += len(row[0])
            return n
        return await self._with(run)

    async def remove(self, oids: list[int]) -> None:
        def run(c: psycopg.Connection) -> int:
            with c.transaction():
                for oid in oids:
                    c.execute("SELECT lo_unlink(%s)", (oid,))
            return 0
        await self._with(run)

    def close(self) -> None:
        for c in self.pool:
            c.close()


async def timed(op: Callable[[int], Awaitable[object]], n: int, concurrency: int = 1) -> float:
    """Seconds for n calls of op(i), `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await op(i)
    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t


async def limits(nc: nats.NATS, bucket: str) -> None:
    js = nc.jetstream()
    info = await js.stream_info(f"OBJ_{bucket}")
    acct = await js.account_info()
    cfg = info.config
    print(f"server max_payload {nc.max_payload} B; chunk {CHUNK} B; "
          f"stream OBJ_{bucket}: max_msg_size {cfg.max_msg_size}, max_bytes {cfg.max_bytes}, "
          f"max_msgs {cfg.max_msgs}, storage {cfg.storage}, discard {cfg.discard}; account: "
          f"max_storage {acct.limits.max_storage}, storage_max_stream_bytes "
          f"{acct.limits.storage_max_stream_bytes}")
    print("a 256 MiB object: 512 chunk messages of 512 KiB (each under max_payload), no stream "
          "or account limit in the way\n")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nats", default="nats://127.0.0.1:4222")
    ap.add_argument("--small", type=int, default=2000, help="4 KiB objects per measurement")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--large-runs", type=int, default=3, help="objects per large size")
    ap.add_argument("--dir", default=None, help="where local files go (default: a temp dir)")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="PostgreSQL for the large-object column ('' to leave it out)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dayfly-blobbench-", dir=args.dir))
    nc1, nc2 = await nats.connect(args.nats), await nats.connect(args.nats)
    bucket = f"dayfly_bench{secrets.token_hex(3)}_objects"
    rows: list[tuple[str, str, float, float, float, float, float]] = []  # nan: not measured
    lo = LargeObjects(args.pg, args.concurrency) if args.pg else None
    try:
        node1 = JetStreamBlobStore(work / "node1", nc1, bucket)
        node2 = JetStreamBlobStore(work / "node2", nc2, bucket)
        await node1.start()
        await node2.start()
        await limits(nc1, bucket)
        files = BlobStore(work / "files")
        plain = work / "plain"
        plain.mkdir()

        async def measure(label: str, size: int, n: int, conc: int) -> None:
            data = os.urandom(size)
            names: list[str] = [""] * n
            fids: list[str] = [""] * n
            jids: list[str] = [""] * n

            async def fput(i: int) -> None:
                names[i] = await asyncio.to_thread(file_put, plain, data)

            async def bput(i: int) -> None:
                fids[i] = (await files.write(body(data), limit=size)).id

            async def jput(i: int) -> None:
                jids[i] = (await node1.write(body(data), limit=size)).id

            t_file = await timed(fput, n, conc)
            t_bs = await timed(bput, n, conc)
            t_js = await timed(jput, n, conc)
            oids: list[int] = [0] * n

            async def lput(i: int) -> None:
                assert lo is not None
                oids[i] = await lo.put(data)
            t_lo = await timed(lput, n, conc) if lo else float("nan")

            def rate(t: float) -> float:
                return n / t if size < MiB else n * size / MiB / t
            rows.append((label, "PUT", rate(t_file), rate(t_bs), rate(t_js), float("nan"),
                         rate(t_lo)))
            g_file = await timed(lambda i: asyncio.to_thread(file_get, plain, names[i]), n, conc)
            g_bs = await timed(lambda i: store_get(files, fids[i]), n, conc)
            g_cold = await timed(lambda i: store_get(node2, jids[i]), n, conc)
            g_warm = await timed(lambda i: store_get(node2, jids[i]), n, conc)
            assert node2.fetches >= n
            g_lo = (await timed(lambda i: lo.get(oids[i], size), n, conc)  # type: ignore[union-attr]
                    if lo else float("nan"))
            rows.append((label, "GET", rate(g_file), rate(g_bs), rate(g_cold), rate(g_warm),
                         rate(g_lo)))
            if lo:
                await lo.remove(oids)
            for p in plain.iterdir():
                p.unlink()
            await asyncio.to_thread(files.remove, *fids)
            await asyncio.to_thread(node1.remove, *jids)

        await measure("4 KiB, 1 at a time (ops/s)", 4096, args.small, 1)
        await measure(f"4 KiB, {args.concurrency} at once (ops/s)", 4096, args.small,
                      args.concurrency)
        await measure("64 MiB (MiB/s)", 64 * MiB, args.large_runs, 1)
        await measure("256 MiB (MiB/s)", 256 * MiB, args.large_runs, 1)
    finally:
        if lo:
            lo.close()
        await Objects(nc1, bucket).drop()
        await nc1.close()
        await nc2.close()
        shutil.rmtree(work, ignore_errors=True)

    def cell(v: float) -> str:
        return "" if v != v else f"{v:,.0f}"

    def ratio(v: float, f: float) -> str:
        return "" if v != v else f"{v / f:.2f}"
    print("| objects | op | local files | file BlobStore | JetStream | JetStream / files "
          "| JetStream, node 2 cached | cached / files | PG large objects | PG / files |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, op, f, b, j, warm, pg in rows:
        print(f"| {label} | {op} | {f:,.0f} | {b:,.0f} | {j:,.0f} | {j / f:.2f} | {cell(warm)} "
              f"| {ratio(warm, f)} | {cell(pg)} | {ratio(pg, f)} |")


if __name__ == "__main__":
    asyncio.run(main())
