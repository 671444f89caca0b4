"""Slowloris: what a normal request sees while an attacker holds 1,000 slow connections to a node
limited to 1,024 open files, beside the same requests without the attack, in the same run.

    python benchmarks/slowloris.py [--slow 1000] [--requests 200] [--out FILE]

The node runs `dayfly up` under `prlimit --nofile=1024:1024` with its default limits (headers
within 10 s, 256 connections per client address, at most 512 connections). The attacker opens
`--slow` connections that send a request line and then one header byte a second, never
finishing, and re-opens every one the node closes, from 1 and then from 20 loopback addresses.
A normal client sends POST {} to a no-op function on a fresh connection each time, one at a time.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.dayfly import NOOP_FUNCTION, NOOP_SOURCE, dayfly_command, deploy, invoke_path, lambda_client
from harness.measure import p50_p99
from harness.procs import free_port, running

FD_LIMIT = 1024
REQUEST_LINE = b"POST /2015-03-31/functions/%s/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: "


class Attacker(threading.Thread):
    """Keeps `count` slow connections open from `sources` addresses, re-opening closed ones."""

    def __init__(self, port: int, count: int, sources: int) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.sources = port, count, sources
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.socks: list[socket.socket | None] = [None] * count
        self.opened = self.closed_by_node = self.refused = 0

    def _open(self, i: int) -> None:
        s = socket.socket()
        s.setblocking(True)
        s.settimeout(5)
        try:
            s.bind((f"127.0.9.{1 + i % self.sources}", 0))
            s.connect(("127.0.0.1", self.port))
            s.sendall(REQUEST_LINE % NOOP_FUNCTION.encode())
            s.setblocking(False)
        except OSError:
            s.close()
            self.refused += 1
            return
        self.socks[i] = s
        self.opened += 1

    def _alive(self, s: socket.socket) -> bool:
        try:
            if s.recv(4096):  # 408, 429 or 503: the node answered and closes
                return False
            return False  # b"": closed
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            s.send(b"a")
            return True
        except OSError:
            return False

    def run(self) -> None:
        for i in range(self.count):
            self._open(i)
        self.ready.set()
        while not self.stopped.wait(1.0):
            for i, s in enumerate(self.socks):
                if s is None or not self._alive(s):
                    if s is not None:
                        s.close()
                        self.closed_by_node += 1
                    self._open(i)
        for s in self.socks:
            if s is not None:
                s.close()

    def open_now(self) -> int:
        return sum(s is not None for s in self.socks)


def normal_requests(port: int, n: int) -> tuple[int, list[float]]:
    """n invokes, each on a new connection; (how many succeeded, latency of each success in ms)."""
    ok, ms = 0, []
    for _ in range(n):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", invoke_path(NOOP_FUNCTION), body=b"{}",
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                ok += 1
                ms.append((time.perf_counter() - t0) * 1000)
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
    return ok, ms


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slow", type=int, default=1000, help="slow connections the attacker holds")
    ap.add_argument("--requests", type=int, default=200, help="normal requests per phase")
    ap.add_argument("--hold", type=float, default=15.0,
                    help="seconds the attack runs before the normal requests (past the 10 s "
                         "header timeout, so the node has closed and the attacker re-opened)")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.slow * 3)), hard))
    prefix, env = dayfly_command()
    port = free_port()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dayfly-slowloris-") as tmp:
        log = Path(tmp) / "server.log"
        argv = ["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}", "--", *prefix, "up", "--port",
                str(port), "--data-dir", f"{tmp}/data"]
        with running(argv, port, "/healthz", log, env=env) as proc:
            deploy(lambda_client(port), NOOP_FUNCTION, NOOP_SOURCE)
            normal_requests(port, 20)  # warm: an instance is up
            rows.append(("none", *normal_requests(port, args.requests), fds(proc.pid), None))
            for sources in (1, 20):
                attacker = Attacker(port, args.slow, sources)
                attacker.start()
                attacker.ready.wait()
                attacker.stopped.wait(args.hold)
                held = fds(proc.pid)
                result = normal_requests(port, args.requests)
                rows.append((f"{args.slow} slow from {sources} address(es)", *result, held,
                             attacker))
                attacker.stopped.set()
                attacker.join()
        said = [line for line in log.read_text(errors="replace").splitlines()
                if "dayfly.connections" in line]
    shown = " ".join(["python", *sys.argv])
    lines = [f"`{shown}` (node: RLIMIT_NOFILE {FD_LIMIT}, default limits; {args.requests} "
             "normal requests per phase, each on a new connection)", "",
             "| attack | normal requests OK | p50 / p99 latency | node's open files | attacker: "
             "open at the end, closed by the node, refused |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, ok, ms, held, attacker in rows:
        p50, p99 = p50_p99(ms) if len(ms) > 1 else (float("nan"), float("nan"))
        who = (f"{attacker.open_now()}, {attacker.closed_by_node}, {attacker.refused}"
               if attacker else "")
        lines.append(f"| {name} | {ok}/{args.requests} | {p50:.1f} / {p99:.1f} ms | {held} | "
                     f"{who} |")
    lines += ["", "The node's log (dayfly.connections):", "", "```", *said, "```"]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
