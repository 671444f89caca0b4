"""Where a burst's CPU goes: many starts at once straight through a sandbox backend (no HTTP,
no scheduler), with the CPU each part used per start.

    python benchmarks/start_cpu.py [--instances 400] [--functions 10] [--parallel 40]

One zygote per function (each started, and its first instance stopped, before timing); then
N starts over the F functions, at most P in flight. Prints starts/s and the CPU time per start
of the host (this process), of the zygotes and of the instances themselves, read from
/proc/PID/schedstat (nanoseconds: a start is far below the clock tick of /proc/PID/stat),
and the machine's user and system time per start (everything else running included). Every
instance is stopped at the end (paced, sandbox/teardown.py) and the backend closed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

from harness.direct import direct_sandbox

HANDLER = "import json, os\n\ndef handler(event, context):\n    return {}\n"
HZ = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | str) -> float:
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except OSError:
        return 0.0


def machine() -> tuple[float, float]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1]) / HZ, v[2] / HZ


async def run(n: int, f: int, parallel: int, tier: str) -> None:
    async with direct_sandbox(tier, "cpu0", HANDLER) as (sb, first):
        specs = [first]
        for i in range(1, f):  # more functions: more zygotes (same code, another name)
            specs.append(dataclasses.replace(first, name=f"cpu{i}"))
        for spec in specs:
            await sb.stop(await sb.start(spec, f"warm-{spec.name}"))
        await asyncio.sleep(1.0)  # spares prepared, nothing else going on
        backend = sb.backend
        zygotes = [z.proc.pid for z in backend.zygotes.values()]  # type: ignore[attr-defined]
        gate = asyncio.Semaphore(parallel)

        async def one(i: int):
            async with gate:
                return await sb.start(specs[i % f], f"i{i}")

        host0, zyg0, (user0, sys0) = cpu_s("self"), sum(map(cpu_s, zygotes)), machine()
        t0 = time.perf_counter()
        handles = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
        host1, zyg1, (user1, sys1) = cpu_s("self"), sum(map(cpu_s, zygotes)), machine()
        inst = sum(cpu_s(h.inst.pid) for h in handles)
        ms = 1000 / n
        print(f"| {n} starts of {f} functions, {parallel} in flight, {tier} tier | value |")
        print("|---|---|")
        for k, v in (
            ("starts/s", f"{n / wall:.0f} ({wall:.2f} s)"),
            ("CPU per start: host / zygotes / instances",
             f"{(host1 - host0) * ms:.2f} / {(zyg1 - zyg0) * ms:.2f} / {inst * ms:.2f} ms"),
            ("machine user / system time per start (all processes)",
             f"{(user1 - user0) * ms:.2f} / {(sys1 - sys0) * ms:.2f} ms"),
            ("instance fork / init p50", f"{statistics.median(h.inst.fork_ms for h in handles):.2f}"
             f" / {statistics.median(h.inst.init_ms for h in handles):.2f} ms"),
            ("load average", f"{os.getloadavg()[0]:.2f}"),
        ):
            print(f"| {k} | {v} |")
        for h in handles:
            await sb.stop(h)
        await backend.teardown.drain()  # type: ignore[attr-defined]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=400)
    ap.add_argument("--functions", type=int, default=10)
    ap.add_argument("--parallel", type=int, default=40)
    ap.add_argument("--isolation", default="linux")
    args = ap.parse_args()
    asyncio.run(run(args.instances, args.functions, args.parallel, args.isolation))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
