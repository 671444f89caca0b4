"""Shared fixtures: a real `dayfly up` server per test module (or one per session for modules
that opt in), zip helpers, strict CI mode.

With DAYFLY_STRICT=1 (set by .ci/run) a test that would skip fails instead, so CI never
passes by skipping what it was meant to check.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

STRICT = os.environ.get("DAYFLY_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In strict mode, turn skips into failures."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in strict mode (DAYFLY_STRICT=1): {reason}"


def pytest_collection_finish(session):
    """Start the cgroup v2 VM as soon as its test is selected: it runs beside the suite."""
    if session.config.option.collectonly:
        return
    for item in session.items:
        if item.nodeid.endswith("test_cgroup_v2.py::test_linux_tier_keeps_its_contract_and_"
                                "limits_on_cgroup_v2"):
            if item.module.kernel_vm.missing() is None:
                item.module.start_early()
            return


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_zip(files: dict[str, str | bytes]) -> bytes:
    """A code bundle from {path: content}; text is dedented."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            if isinstance(content, str):
                content = textwrap.dedent(content)
            zf.writestr(name, content)
    return buf.getvalue()


@dataclass
class Server:
    """A running `dayfly up` subprocess."""

    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lambda_client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("lambda", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="x", aws_secret_access_key="x",
                            config=Config(retries={"max_attempts": 1}, read_timeout=120))


def start_server(data_dir: Path, *extra: str, prefix: tuple[str, ...] = (),
                 host: str | None = None) -> Server:
    """`dayfly up` on a free port; `prefix` wraps the command (it must exec, keeping the pid);
    `host` is passed as --host, and the returned url reaches it over that family's loopback."""
    local = "::1" if host and ":" in host else "127.0.0.1"
    port = free_port(local)
    log_path = data_dir.parent / f"server-{port}.log"
    logf = open(log_path, "wb")  # noqa: SIM115 - closed by stop_server
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "dayfly.cli.main", "up", "--port", str(port),
         "--data-dir", str(data_dir), *(("--host", host) if host else ()), *extra],
        stdout=logf, stderr=subprocess.STDOUT)
    url = f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dayfly up exited: {log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, port, data_dir, proc, log_path)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"dayfly up did not answer: {log_path.read_text()}")


def stop_server(server: Server, sig: int = 2) -> int:
    """Stop by PID (SIGINT = Ctrl-C by default) and wait; returns the exit code."""
    if server.proc.poll() is None:
        server.proc.send_signal(sig)
        try:
            server.proc.wait(20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


# `dayfly up` flags of a node that lets functions ask for the weak `process` tier; a test
# module whose functions need it (to write to a host file, say) opts in with
# SERVER_ARGS = ALLOW_WEAK, which the `server` fixture passes on
ALLOW_WEAK = ("--allow-weak-isolation",)


@pytest.fixture(scope="session")
def shared_servers(tmp_path_factory) -> Iterator[dict[tuple[str, ...], Server]]:
    """The session's shared nodes, one per set of `dayfly up` flags, started on first use."""
    servers: dict[tuple[str, ...], Server] = {}
    try:
        yield servers
    finally:
        for srv in servers.values():
            stop_server(srv)


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, shared_servers) -> Iterator[Server]:
    """A `dayfly up` for the module (with its SERVER_ARGS). A module that sets
    SHARED_SERVER = True gets the session's node with the same flags instead of its own: its
    tests name what they make uniquely and assert nothing about the node as a whole (no
    function listings, metrics totals, log counts, data dir contents, restarts)."""
    args = tuple(getattr(request.module, "SERVER_ARGS", ()))
    if getattr(request.module, "SHARED_SERVER", False):
        srv = shared_servers.get(args)
        if srv is None or srv.proc.poll() is not None:
            srv = shared_servers[args] = start_server(
                tmp_path_factory.mktemp("dayfly-shared") / "data", *args)
        yield srv
        return
    srv = start_server(tmp_path_factory.mktemp("dayfly") / "data", *args)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def lam(server):
    return server.lambda_client()


def children_of(pid: int) -> set[int]:
    """Every live descendant of pid (from /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out
