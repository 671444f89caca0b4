"""Watch the machine while thousands of instances go away: how long, and what it cost others."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

INSTANCE_UID_BASE = 200_000  # the linux tier's instances run as 200000 + their cgroup slot


def instance_procs(server: int) -> tuple[int, int]:
    """(live linux-tier instances of the dayfly whose pid is `server`: those in its cgroup pool
    `dayfly-<pid>`, which they stay in after it exited; other processes in D state, machine
    wide: an idle instance is frozen, which /proc shows as D, and counts in no load average)."""
    alive = blocked = 0
    mine = f"/dayfly-{server}/".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
            if uid >= INSTANCE_UID_BASE:
                alive += state != b"Z" and mine in Path(f"/proc/{pid}/cgroup").read_bytes()
            else:
                blocked += state == b"D"
        except (OSError, IndexError):
            continue
    return alive, blocked


def unreclaimable_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SUnreclaim:"):
            return int(line.split()[1]) / 1024
    return 0.0


class StallProbe(threading.Thread):
    """Sleeps 10 ms at a time and keeps the worst lateness of its wake-ups."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.worst_ms = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            time.sleep(0.01)
            self.worst_ms = max(self.worst_ms, (time.perf_counter() - t) * 1000 - 10)


class Watch:
    """Started before the teardown is asked for; `until_gone` samples until no instance of the
    dayfly whose pid is `server` is left."""

    def __init__(self, server: int) -> None:
        self.server = server
        self.slab0 = unreclaimable_mib()
        self.probe = StallProbe()
        self.probe.start()
        self.t0 = time.monotonic()
        self.most_blocked, self.load, self.left, self.gone_s = 0, os.getloadavg()[0], -1, 0.0

    def until_gone(self, limit_s: float, keep: int = 0) -> Watch:
        """Until at most `keep` are left (the spares each zygote keeps while dayfly runs)."""
        while time.monotonic() - self.t0 < limit_s:
            alive, blocked = instance_procs(self.server)
            self.left = max(0, alive - keep)
            self.most_blocked = max(self.most_blocked, blocked)
            self.load = max(self.load, os.getloadavg()[0])
            if self.left == 0:
                break
            time.sleep(0.1)
        self.gone_s = time.monotonic() - self.t0
        time.sleep(2)  # the kernel frees namespaces after their last process, in the background
        self.probe.stop.set()
        self.probe.join()
        self.load = max(self.load, os.getloadavg()[0])
        return self

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("teardown: every instance gone after",
             f"{self.gone_s:.2f} s" + (f" ({self.left} left)" if self.left else "")),
            ("teardown: most other processes in D state at once, highest load average",
             f"{self.most_blocked}, {self.load:.2f}"),
            ("teardown: worst lateness of a 10 ms sleep", f"{self.probe.worst_ms:.1f} ms"),
            ("SUnreclaim before / 2 s after teardown",
             f"{self.slab0:.0f} / {unreclaimable_mib():.0f} MiB"),
        ]
