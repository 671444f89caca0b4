"""How long an instance takes to start and answer its first invocation, without HTTP.

    python benchmarks/instance_start.py [--starts 100] [--isolation linux]

Starts one instance after another straight through the sandbox backend (each stopped before
the next, a spare prepared meanwhile, as after a scale to zero) and times start plus first
invocation of a standard-library handler; also the instance's own init. On a shared machine
this varies less than `benchmarks/run.py`'s cold starts, which add the gateway and a client.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from harness.direct import direct_sandbox

from dayfly.types import InvokeRequest

HANDLER = "import json, os\n\ndef handler(event, context):\n    return {}\n"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n: int, tier: str) -> None:
    total, init = [], []
    async with direct_sandbox(tier, "start", HANDLER) as (sb, spec):
        await sb.stop(await sb.start(spec, "zygote"))  # the zygote's own start is not timed
        for i in range(n):
            await asyncio.sleep(0.05)  # room to prepare the next spare
            t0 = time.perf_counter()
            h = await sb.start(spec, f"i{i}")
            req = InvokeRequest(request_id=f"r{i}", payload=b"{}", invoked_arn="arn")
            req.deadline_ms = int((time.time() + 5) * 1000)
            await sb.invoke(h, req, 5)
            total.append((time.perf_counter() - t0) * 1000)
            init.append(h.inst.init_ms)
            await sb.stop(h)
    print(f"| {n} starts, {tier} tier | p50 | p90 | p99 |\n|---|---|---|---|")
    for name, values in (("start + first invocation (ms)", total), ("instance init (ms)", init)):
        print(f"| {name} | " + " | ".join(f"{quantile(values, q):.2f}" for q in (.5, .9, .99))
              + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=100)
    ap.add_argument("--isolation", default="linux")
    args = ap.parse_args()
    asyncio.run(run(args.starts, args.isolation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
