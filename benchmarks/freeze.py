"""What freezing idle instances adds to a warm invoke: linux tier, one client (c=1), freezing
on and off in the same run.

    python benchmarks/freeze.py [--requests 2000] [--rounds 10]

Starts two `dayfly up --isolation linux` servers, one with DAYFLY_FREEZE_IDLE=0, deploys
`return {}` on each, and sends sequential invokes over one keep-alive connection to each in
turn (rounds interleaved, so both see the same machine). With freezing on, every invoke
thaws the instance before it is sent and freezes it after the reply (two pwrites on held
fds). Prints p50/p99 per server, and how often the frozen server's instance was seen frozen
between two invokes (it must be: otherwise the comparison measures nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.dayfly import (
    NOOP_FUNCTION,
    NOOP_SOURCE,
    dayfly_command,
    deploy,
    invoke_path,
    lambda_client,
    list_instances,
)
from harness.measure import LOOPBACK
from harness.procs import connection, expect, free_port, request, running

from dayfly.sandbox.linux import cgroups


@contextlib.contextmanager
def server(freeze: bool, work: Path) -> Iterator[int]:
    """A linux-tier `dayfly up` with freezing on or off; yields its port once NOOP is warm."""
    port = free_port()
    prefix, env = dayfly_command()
    env = {**env, "DAYFLY_FREEZE_IDLE": "1" if freeze else "0"}
    data = work / ("frozen" if freeze else "plain")
    argv = [*prefix, "up", *LOOPBACK, str(port), "--data-dir", str(data), "--isolation",
            "linux"]
    data.mkdir()
    with running(argv, port, "/healthz", data / "server.log", env=env, cwd=data) as proc:
        deploy(lambda_client(port), NOOP_FUNCTION, NOOP_SOURCE)
        with connection(port) as conn:
            for _ in range(50):
                expect(request(conn, "POST", invoke_path(NOOP_FUNCTION), b"{}"), 200, "warm-up")
        yield port
        del proc


def frozen_state(pid: int) -> bool:
    """Whether the instance `pid` sits in a frozen cgroup (v1 freezer or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, rel = line.split(":", 2)
        if "freezer" in names.split(","):
            state = Path("/sys/fs/cgroup/freezer", rel.lstrip("/"), "freezer.state")
            return state.read_text().strip() == "FROZEN"
        if names == "":
            events = Path("/sys/fs/cgroup", rel.lstrip("/"), "cgroup.events").read_text()
            if "frozen 1" in events:
                return True
    return False


def instance_pid(port: int) -> int:
    """The host pid of the function's one warm instance."""
    with connection(port) as conn:
        (inst,) = list_instances(conn, NOOP_FUNCTION)
    return int(inst["pid"])


def seen_frozen(pid: int) -> bool:
    """Whether the idle instance is (or within 0.1 s becomes) frozen: the kernel finishes a
    freeze asynchronously after the write."""
    deadline = time.monotonic() + 0.1
    while not frozen_state(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def timed(port: int, n: int) -> list[float]:
    """N sequential invokes on one keep-alive connection, in microseconds each."""
    out = []
    path = invoke_path(NOOP_FUNCTION)
    with connection(port) as conn:
        for _ in range(n):
            t0 = time.perf_counter()
            reply = request(conn, "POST", path, b"{}")
            out.append((time.perf_counter() - t0) * 1e6)
            expect(reply, 200, "invoke")
    return out


def kernel_cost(pairs: int = 2000) -> dict[str, float]:
    """Microseconds per freeze and per thaw write of a cgroup holding one sleeping process,
    on this machine's hierarchy, with and without a second (empty) cgroup kept frozen as
    CgroupPool does on v1 (which keeps the kernel's freezer static key on)."""
    v2 = cgroups.version() == 2
    base = cgroups.ROOT / ("" if v2 else "freezer") / f"bench-freeze-{os.getpid()}"
    state, frozen, thawed = ("cgroup.freeze", b"1", b"0") if v2 else ("freezer.state",
                                                                       b"FROZEN", b"THAWED")
    target, keep = base / "target", base / "keep"
    for d in (base, target, keep):
        d.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    out: dict[str, float] = {}
    try:
        (target / "cgroup.procs").write_text(str(child.pid))
        fd = os.open(target / state, os.O_RDWR if not v2 else os.O_WRONLY)
        keep_fd = os.open(keep / state, os.O_RDWR if not v2 else os.O_WRONLY)
        try:
            for label, held in (("alone", thawed), ("with a frozen keep cgroup", frozen)):
                os.pwrite(keep_fd, held, 0)
                t_freeze = t_thaw = 0
                for _ in range(pairs):
                    t0 = time.perf_counter_ns()
                    os.pwrite(fd, frozen, 0)
                    t1 = time.perf_counter_ns()
                    os.pwrite(fd, thawed, 0)
                    t_freeze += t1 - t0
                    t_thaw += time.perf_counter_ns() - t1
                out[f"freeze, {label}"] = t_freeze / pairs / 1000
                out[f"thaw, {label}"] = t_thaw / pairs / 1000
            os.pwrite(keep_fd, thawed, 0)
        finally:
            os.close(fd)
            os.close(keep_fd)
    finally:
        child.kill()
        child.wait()
        for d in (target, keep, base):
            d.rmdir()
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="per server and round")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    samples: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="bench-freeze-") as tmp, \
            server(False, Path(tmp)) as plain, server(True, Path(tmp)) as frozen:
        pid = instance_pid(frozen)
        seen = int(seen_frozen(pid))
        for _ in range(args.rounds):
            samples["off"] += timed(plain, args.requests)
            samples["on"] += timed(frozen, args.requests)
            seen += seen_frozen(pid)  # between rounds, idle: frozen
        assert seen == args.rounds + 1, f"the instance was frozen {seen} of {args.rounds + 1} times"
        single = instance_pid(frozen) == pid  # one instance served every invoke: all warm
    kernel = kernel_cost()
    n = args.requests * args.rounds
    print(f"| linux tier, c=1, {n} warm invokes each | p50 (us) | p90 (us) | p99 (us) | mean |")
    print("|---|---|---|---|---|")
    for name, key in (("freezing off (DAYFLY_FREEZE_IDLE=0)", "off"), ("freezing on", "on")):
        vals = samples[key]
        print(f"| {name} | " + " | ".join(f"{quantile(vals, q):.0f}" for q in (.5, .9, .99))
              + f" | {statistics.fmean(vals):.0f} |")
    d50 = quantile(samples["on"], .5) - quantile(samples["off"], .5)
    d99 = quantile(samples["on"], .99) - quantile(samples["off"], .99)
    print(f"\nfreezing adds {d50:+.0f} us at p50, {d99:+.0f} us at p99; idle instance seen frozen "
          f"{seen} times of {args.rounds + 1}; one warm instance throughout: {single}")
    print(f"\n| one write to the freezer (cgroup v{cgroups.version()}) | us |\n|---|---|")
    for name, us in kernel.items():
        print(f"| {name} | {us:.1f} |")
    print(json.dumps({"p50_delta_us": round(d50), "p99_delta_us": round(d99)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
