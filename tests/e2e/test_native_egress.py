"""Native egress (issue 16, point 5): a function that declares `network = ["127.0.0.1:5432",
...]` reaches the machine's PostgreSQL with psycopg and its Redis with redis-py, by the address
or name it wrote, with a plain TCP connect and no proxy settings; from the linux tier as root,
rootless (a whole `dayfly up` run as nobody) and from gVisor. What it did not declare stays
refused: another port, another host, a host loopback service (Redis at [::1]:6379 when only
127.0.0.1:6379 is declared; a listener this test holds, which must see no connection), and a
name it did not declare does not resolve.

PostgreSQL (tests/pg_helpers.py: DAYFLY_TEST_PG) and Redis (127.0.0.1:6379) are the machine's:
without them these tests skip, and fail in strict mode (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import start_server, stop_server
from egress_helpers import deploy, invoke, machine_name
from pg_helpers import fresh_database

from dayfly.platform import available_backends

REPO = Path(__file__).resolve().parent.parent.parent
NOBODY = 65534
UNPRIVILEGED = ("unshare", "--mount", "--propagation", "private", sys.executable,
                str(REPO / "tests" / "security" / "unprivileged.py"))
REDIS = ("127.0.0.1", 6379)


def _redis():
    import redis

    client = redis.Redis(*REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis unreachable at {REDIS[0]}:{REDIS[1]}: {exc}")
    return client


class _Canary:
    """A listener on host loopback that no function declares: it counts who connects."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.fixture(scope="module")
def rootless_server():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("the rootless run needs root (to become nobody) and unshare")
    home = Path(tempfile.mkdtemp(prefix="dayfly-rootless-"))
    os.chown(home, NOBODY, NOBODY)
    srv = start_server(home / "data", prefix=UNPRIVILEGED)
    try:
        yield srv
    finally:
        stop_server(srv)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(params=["linux", "rootless", "gvisor"])
def node(request):
    """(the node's URL, the isolation its functions ask for)."""
    if request.param == "rootless":
        return request.getfixturevalue("rootless_server").url, "linux"
    if request.param not in available_backends():
        pytest.skip(f"isolation tier {request.param!r} is not available on this machine")
    if request.param == "linux" and os.geteuid() != 0:
        pytest.skip("the linux tier as root needs root")
    return request.getfixturevalue("server").url, request.param


@pytest.fixture
def pg():
    with fresh_database("dayfly_egress") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE seen (tag text, via text)")
        yield dsn


def test_psycopg_and_redis_reach_declared_services_natively(node, pg):
    url, isolation = node
    cache = _redis()
    info = psycopg.conninfo.conninfo_to_dict(pg)
    host, port = info.get("host", "127.0.0.1"), int(info.get("port", 5432))
    name = machine_name()
    if name is None:
        pytest.skip(f"this machine's name {socket.gethostname()!r} does not resolve to loopback")
    canary = _Canary()
    network = [f"{host}:{port}", f"{name}:{port}", f"localhost:{REDIS[1]}"]
    fn = f"egress-{uuid.uuid4().hex[:8]}"
    toml = f'isolation = "{isolation}"\ntimeout = 60\nmemory = 256\nnetwork = {network!r}\n'
    out = deploy(url, fn, toml.replace("'", '"'))
    assert out["status"] == 200 and "function" in out, out
    by_name = psycopg.conninfo.make_conninfo(pg, host=name)
    tag = uuid.uuid4().hex
    result = invoke(url, fn, {
        "tag": tag, "pg": [pg, by_name], "redis": ["localhost", REDIS[1]],
        "probes": [
            {"kind": "tcp", "host": host, "port": port + 1},  # same host, undeclared port
            {"kind": "redis", "host": "::1", "port": REDIS[1]},  # host's Redis, not declared there
            {"kind": "redis", "host": "127.0.0.1", "port": canary.port},  # a host service
            {"kind": "tcp", "host": "192.0.2.1", "port": port},  # another host
            {"kind": "pg", "dsn": psycopg.conninfo.make_conninfo(pg, host="db.undeclared.internal")},
            {"kind": "dns", "host": "example.com"},
        ]})
    # the rows and the key are there, seen from the host: the function reached the real services
    with psycopg.connect(pg) as conn:
        rows = conn.execute("SELECT via FROM seen WHERE tag = %s ORDER BY via", (tag,)).fetchall()
    assert sorted(v for (v,) in rows) == sorted([pg, by_name])
    assert result["redis"] == fn and cache.get(tag) == fn.encode()
    if isolation == "gvisor":
        assert result["proxy_env"] == []  # declared egress there is native only
    undeclared_port, v6_redis, host_service, other_host, undeclared_pg, dns = result["probes"]
    assert undeclared_port["errno"] == "ECONNREFUSED", undeclared_port
    assert v6_redis["type"] == "ConnectionError" and "refused" in v6_redis["text"], v6_redis
    assert host_service["type"] == "ConnectionError" and "refused" in host_service["text"]
    assert other_host["errno"] in ("ENETUNREACH", "EHOSTUNREACH"), other_host
    assert undeclared_pg["type"] == "OperationalError" and "db.undeclared.internal" in \
        undeclared_pg["text"], undeclared_pg
    assert dns["type"] == "gaierror", dns
    assert canary.accepted == 0
    canary.sock.close()


def test_destinations_a_tier_cannot_offer_are_refused_at_deploy(server):
    """A clear 400 at deploy: gVisor has only its loopback for declared destinations; the linux
    tier's HTTP proxy holds 127.0.0.1:3128 in every instance namespace."""
    cases = [("linux", "127.0.0.1:3128", "where the sandbox's HTTP proxy listens")]
    if "gvisor" in available_backends():
        cases.append(("gvisor", "10.20.30.40:5432", "declare it by a name"))
    for isolation, entry, why in cases:
        out = deploy(server.url, f"egress-{uuid.uuid4().hex[:8]}",
                     f'isolation = "{isolation}"\nnetwork = ["{entry}"]\n')
        assert out["error"]["status"] == 400, out
        assert out["error"]["code"] == "InvalidParameterValueException", out
        assert why in out["error"]["message"] and entry in out["error"]["message"], out
    if "gvisor" not in available_backends():
        pytest.skip("isolation tier 'gvisor' is not available on this machine")
