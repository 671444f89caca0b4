"""The server's own life: Ctrl-C stops every process it started, state survives a restart, and a
SIGKILLed server's zygote and instances exit by themselves."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import Server, children_of, start_server, stop_server
from e2e_helpers import create, invoke, unique_name, wait_for

HANDLER = {"handler.py": """
    import os, time

    INSTANCE = os.urandom(8).hex()

    def handler(event, context):
        time.sleep(event.get("sleep", 0))
        return {"instance": INSTANCE, "value": os.environ["VALUE"]}
"""}


def running(pid: int) -> bool:
    """Whether pid is a live process (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def survivors(pids: set[int], within: float = 5.0) -> set[int]:
    """The pids still running after waiting up to `within` seconds for all of them to go."""
    deadline = time.monotonic() + within
    left = {p for p in pids if running(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {p for p in left if running(p)}
    return left


def instance_pids(srv: Server, name: str) -> set[int]:
    """Host pids of the function's live instances, from dayfly's instances endpoint (a handler's
    own os.getpid() is namespace-local in the linux tier)."""
    r = httpx.get(f"{srv.url}/dayfly/v1/functions/{name}/instances", timeout=10)
    assert r.status_code == 200, r.text
    return {i["pid"] for i in r.json()["instances"] if i["pid"]}


def warm_up(srv: Server, name: str) -> set[int]:
    """Deploy `name` and run it until several instances are warm; return their host pids."""
    lam = srv.lambda_client()
    create(lam, name, HANDLER, Environment={"Variables": {"VALUE": "persisted"}})
    assert invoke(lam, name)[1]["value"] == "persisted"
    with ThreadPoolExecutor(3) as pool:
        bodies = list(pool.map(lambda _: invoke(lam, name, {"sleep": 0.3})[1], range(3)))
    assert [b["value"] for b in bodies] == ["persisted"] * 3
    # the burst queued work, so more instances were started (they may finish starting after it)
    def at_least_two() -> set[int]:
        pids = instance_pids(srv, name)
        return pids if len(pids) >= 2 else set()

    pids = wait_for(at_least_two)
    assert len(pids) >= 2
    return pids


@dataclass
class SigintRun:
    """What happened when a warm server was stopped with SIGINT."""

    data_dir: Path
    name: str
    instances: set[int]
    children: set[int]
    exit_code: int
    survivors: set[int]


@pytest.fixture(scope="module")
def sigint_run(tmp_path_factory) -> SigintRun:
    data_dir = tmp_path_factory.mktemp("lifecycle") / "data"
    name = unique_name("persist")
    srv = start_server(data_dir)
    try:
        instances = warm_up(srv, name)
        children = children_of(srv.proc.pid)
    finally:
        code = stop_server(srv, signal.SIGINT)
    return SigintRun(data_dir, name, instances, children, code, survivors(children | instances))


def test_sigint_stops_every_process_the_server_started(sigint_run):
    # a zygote plus at least two instances (the parallel burst needed more than one)
    assert len(sigint_run.instances) >= 2
    assert sigint_run.instances < sigint_run.children
    assert len(sigint_run.children) >= 3
    assert sigint_run.survivors == set()


def test_sigint_exits_with_code_zero(sigint_run):
    assert sigint_run.exit_code == 0


def test_restart_on_the_same_data_dir_keeps_functions(sigint_run):
    srv = start_server(sigint_run.data_dir)
    children: set[int] = set()
    try:
        lam = srv.lambda_client()
        names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
        assert sigint_run.name in names
        conf = lam.get_function_configuration(FunctionName=sigint_run.name)
        assert conf["Environment"] == {"Variables": {"VALUE": "persisted"}}
        assert conf["State"] == "Active"
        resp, body = invoke(lam, sigint_run.name)
        assert resp["StatusCode"] == 200
        assert body["value"] == "persisted"
        children = children_of(srv.proc.pid)
        fresh = instance_pids(srv, sigint_run.name)
        assert len(fresh) == 1
        assert fresh <= children - sigint_run.children
    finally:
        stop_server(srv, signal.SIGINT)
    assert survivors(children) == set()


def test_sigkilled_server_leaves_no_processes_behind(tmp_path):
    srv = start_server(tmp_path / "data")
    try:
        instances = warm_up(srv, unique_name("orphan"))
        children = children_of(srv.proc.pid)
    finally:
        code = stop_server(srv, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert instances < children
    # nobody is left to tell them: the zygote sees its channel close and takes its instances along
    assert survivors(children | instances) == set()
