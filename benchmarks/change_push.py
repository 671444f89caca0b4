"""How long a change made through one node takes to be applied on another (issue 14: within
1 s). Two nodes' stores over one fresh PostgreSQL database (the nodes of
tests/contract/test_change_push.py: real PostgresDatabase, registry, tokens, functions and a
stub sandbox), measured from the write returning on node A to node B having applied it in
memory (token create: 200 samples; function update_config, which re-reads the function,
rebuilds its spec and redeploys its warm pool: 50 samples).

    python benchmarks/change_push.py        # needs PostgreSQL on 127.0.0.1:5432 (tests/pg_helpers.py)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "contract")]

import test_change_push as t  # noqa: E402
from pg_helpers import fresh_database  # noqa: E402

from dayfly.config import Settings  # noqa: E402


def summary(name: str, xs: list[float]) -> str:
    xs = sorted(xs)
    p99 = xs[max(0, int(len(xs) * 0.99) - 1)]
    return (f"{name:<28} n={len(xs):<4} p50={statistics.median(xs) * 1000:7.2f} ms  "
            f"p99={p99 * 1000:7.2f} ms  max={xs[-1] * 1000:7.2f} ms")


async def main() -> None:
    with fresh_database() as dsn, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for n in ("a", "b"):
            Settings(data_dir=tmp / n).ensure_dirs()
        a = t.Node(dsn, tmp / "a")
        for f in ("secrets.key", "master.key"):  # one key set, as a cluster key gives
            shutil.copy(tmp / "a" / f, tmp / "b" / f)
        b = t.Node(dsn, tmp / "b")
        await a.start()
        await b.start()
        tokens = []
        for _ in range(200):
            x = await a.tokens.create("m")
            tokens.append(await b.until(lambda x=x: b.tokens.check(x["token"]) is not None))
        await a.functions.create({"FunctionName": "fn", "Handler": "app.handler",
                                  "Code": t.code("v1"), "Dayfly": {"MinWarm": 1}})
        await b.until(lambda: len(t.warm(b, "fn")) == 1)
        updates = []
        for i in range(50):
            await a.functions.update_config("fn", {"Timeout": 10 + i})
            updates.append(await b.until(
                lambda i=i: b.registry.get("fn").latest.timeout == 10 + i))
        print(f"load average {os.getloadavg()[0]:.1f}")
        print(summary("token create", tokens))
        print(summary("function update_config", updates))
        await a.close()
        await b.close()


if __name__ == "__main__":
    asyncio.run(main())
