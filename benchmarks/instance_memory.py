"""What an idle instance's memory is made of, mapping by mapping (issue 3's PSS promise).

    python benchmarks/instance_memory.py [--instances 20] [--isolation linux]

Starts N idle instances of a standard-library handler (with an empty dependencies folder, as
deployed functions have) straight through the sandbox backend, then prints, per kind of
mapping, the mean Private_Dirty (pages the instance copied from its zygote: what each one
costs when thousands are held) and Pss of /proc/PID/smaps. Stops everything at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys

from harness.direct import direct_sandbox

HANDLER = "import json, os\n\ndef handler(event, context):\n    return {'pid': os.getpid()}\n"
FIELDS = ("Private_Dirty", "Pss")


def kind(name: str, perms: str) -> str:
    """The row a mapping is counted in."""
    base = os.path.basename(name)
    if name in ("[heap]", "[stack]"):
        return {"[heap]": "glibc heap", "[stack]": "stack"}[name]
    if not name:
        return "anonymous (pymalloc arenas, .bss)"
    if "libpython" in base:
        return f"libpython {'data' if 'w' in perms else 'text'}"
    return "other mappings"


def smaps(pid: int) -> dict[str, collections.Counter]:
    """Private_Dirty and Pss (KiB) of process PID, summed per kind of mapping."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    row = "other mappings"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                row = kind(parts[5] if len(parts) > 5 else "", parts[1])
            elif parts[0].rstrip(":") in FIELDS:
                out[row][parts[0].rstrip(":")] += int(parts[1])
    return out


async def run(n: int, tier: str) -> None:
    async with direct_sandbox(tier, "memory", HANDLER) as (sb, spec):
        handles = []
        try:
            for i in range(n):
                handles.append(await sb.start(spec, f"i{i}"))
            await asyncio.sleep(0.5)
            total: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
            for h in handles:
                for row, values in smaps(h.inst.pid).items():
                    total[row].update(values)
            print(f"| {n} idle {tier} instances, mean KiB | Private_Dirty | Pss |\n|---|---|---|")
            rows = sorted(total.items(), key=lambda kv: -kv[1]["Private_Dirty"])
            for row, v in [*rows, ("total", sum((c for _, c in rows), collections.Counter()))]:
                print(f"| {row} | {v['Private_Dirty'] / n:,.0f} | {v['Pss'] / n:,.0f} |")
        finally:
            for h in handles:
                await sb.stop(h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--isolation", default="linux")
    args = ap.parse_args()
    asyncio.run(run(args.instances, args.isolation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
