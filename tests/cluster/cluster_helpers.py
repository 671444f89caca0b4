"""A real cluster on this machine for tests: a fresh PostgreSQL database, a unique cluster name
(so its NATS streams, KV buckets and object stores are its own), N `dayfly up --cluster` nodes
(each its own data dir and port, started by conftest.start_server), kill -9 and restart of a
node, and afterwards every node stopped, the database dropped and every NATS stream, bucket and
object store of the cluster deleted.

    with running_cluster(tmp_path, 3) as c:
        c.nodes[0].url ...; c.kill(1); c.restart(1)

Not a conftest.py: test modules import it by name (their folder is on sys.path).
PostgreSQL: tests/pg_helpers.py (DAYFLY_TEST_PG); NATS: tests/nats_helpers.py
($DAYFLY_TEST_NATS or 127.0.0.1:4222).
Either missing skips the test, which fails in strict mode (DAYFLY_STRICT=1).
"""

from __future__ import annotations

import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from conftest import Server, start_server, stop_server
from nats_helpers import NATS_URL, drop_nats, require_nats
from pg_helpers import fresh_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "triggers"))


@dataclass
class Cluster:
    """N nodes sharing one database and one cluster name; `nodes[i]` is None while node i is
    down."""

    base: Path
    name: str
    dsn: str
    key_file: Path
    extra: tuple[str, ...] = ()
    nodes: list[Server | None] = field(default_factory=list)

    def args(self, i: int) -> tuple[str, ...]:
        return ("--cluster", "--database", self.dsn, "--nats", NATS_URL, "--cluster-name",
                self.name, "--node-id", self.node_id(i), "--cluster-key-file",
                str(self.key_file), *self.extra)

    def node_id(self, i: int) -> str:
        return f"node{i}"

    def start(self, i: int) -> Server:
        data = self.base / f"node{i}" / "data"
        data.parent.mkdir(parents=True, exist_ok=True)
        server = start_server(data, *self.args(i))
        while len(self.nodes) <= i:
            self.nodes.append(None)
        self.nodes[i] = server
        return server

    def node(self, i: int) -> Server:
        server = self.nodes[i]
        assert server is not None, f"node {i} is down"
        return server

    def up(self) -> list[Server]:
        return [s for s in self.nodes if s is not None]

    def kill(self, i: int) -> None:
        """kill -9: no goodbye, its leases and heartbeats just stop."""
        server = self.node(i)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        self.nodes[i] = None

    def restart(self, i: int) -> Server:
        return self.start(i)

    def live(self, via: int) -> list[str]:
        """Node ids that node `via` lists as live (GET /dayfly/v1/nodes)."""
        r = httpx.get(f"{self.node(via).url}/dayfly/v1/nodes", timeout=5)
        assert r.status_code == 200, r.text
        return sorted(n["id"] for n in r.json()["nodes"])

    def stop(self) -> None:
        for i, server in enumerate(self.nodes):
            if server is not None:
                stop_server(server)
                self.nodes[i] = None


@contextmanager
def running_cluster(base: Path, n: int, *extra: str) -> Iterator[Cluster]:
    """A fresh cluster of `n` nodes; everything it made is removed afterwards."""
    require_nats()
    name = f"t{secrets.token_hex(5)}"
    with fresh_database("dayfly_c") as dsn:
        key_file = base / "cluster.key"
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
        cluster = Cluster(base, name, dsn, key_file, extra)
        try:
            for i in range(n):
                cluster.start(i)
            yield cluster
        finally:
            cluster.stop()
            drop_nats(name)


def poll(check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """`check()` until it is truthy or `timeout` passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def three_nodes(tmp_path_factory) -> Iterator[Cluster]:
    """Three nodes; a test module makes it its fixture:
    `cluster3 = pytest.fixture(scope="module")(three_nodes)`."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), 3, "--allow-weak-isolation") as c:
        yield c
