"""Start, probe and stop servers as process groups, and measure their memory."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
SURVIVOR_GRACE_S = 3.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Reply(NamedTuple):
    """One HTTP response, read in full."""

    status: int
    body: bytes
    headers: http.client.HTTPMessage


def connection(port: int, timeout: float = 30.0) -> contextlib.closing[http.client.HTTPConnection]:
    """Return a keep-alive HTTP connection to 127.0.0.1:PORT that closes at block end."""
    return contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))


def request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> Reply:
    """Send one request on CONN and read the whole response."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return Reply(response.status, response.read(), response.headers)


def request_once(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30.0
) -> Reply:
    """Send one request to 127.0.0.1:PORT on a connection of its own."""
    with connection(port, timeout) as conn:
        return request(conn, method, path, body)


def expect(reply: Reply, status: int, what: str) -> bytes:
    """Return REPLY's body; fail unless it has STATUS and no Lambda function error."""
    function_error = reply.headers.get("X-Amz-Function-Error")
    if reply.status != status or function_error:
        detail = f"{reply.status} {function_error or ''}".strip()
        raise RuntimeError(f"{what} answered {detail}: {reply.body[:300]!r}")
    return reply.body


def check_invoke(port: int, path: str) -> None:
    """Fail unless POST {} to PATH answers 200 with a JSON body and no function error."""
    json.loads(expect(request_once(port, "POST", path, b"{}"), 200, f"POST {path}"))


def log_tail(log: Path, lines: int = 15) -> str:
    """Return the last lines of a server log, for error messages."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, log: Path) -> None:
    """Poll GET PATH until it answers 200; fail early if the server exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if request_once(port, "GET", path, timeout=2.0).status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT_S:.0f} s:\n{log_tail(log)}")


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send SIG to the process group PGID, ignoring a group that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def alive(pid: int) -> bool:
    """Tell whether PID exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> list[int]:
    """Stop the process group PROC leads; return PIDs of its former tree still alive after."""
    tree = process_tree(proc.pid)
    signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(STOP_GRACE_S)
    signal_group(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + SURVIVOR_GRACE_S
    while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in tree if alive(pid)]


@contextlib.contextmanager
def running(
    argv: list[str],
    port: int,
    ready_path: str,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ARGV in a new session (its own process group) until the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        wait_ready(proc, port, ready_path, log)
        yield proc
    except BaseException:
        # the server's own account of what went wrong, before its folder is removed
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print(f"--- last lines of {argv[0]}'s log ---", *tail, "---", sep="\n", file=sys.stderr)
        raise
    finally:
        survivors = stop(proc)
        if survivors:
            raise RuntimeError(f"processes of the server still alive after stopping: {survivors}")


def parent_pids() -> dict[int, int]:
    """Map every live PID to its parent PID, read from /proc/*/stat."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            parents[int(stat.parent.name)] = int(fields[1])
    return parents


def process_tree(root: int) -> list[int]:
    """Return ROOT and all its live descendants."""
    parents = parent_pids()
    tree = [root]
    for pid in tree:
        tree.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def pss_mib(pid: int) -> float:
    """Return the proportional set size of PID in MiB, from /proc/PID/smaps_rollup."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss line in /proc/{pid}/smaps_rollup")


def tree_pss_mib(root: int) -> tuple[float, int]:
    """Return (summed PSS in MiB, process count) of ROOT's process tree."""
    sizes = []
    for pid in process_tree(root):
        with contextlib.suppress(OSError):  # the process exited meanwhile
            sizes.append(pss_mib(pid))
    return sum(sizes), len(sizes)


def start_platform(data: Path, isolation: str | None = None) -> tuple[subprocess.Popen, str]:
    """`dayfly up` on a free port and data dir `data`, waited for; (process, base URL)."""
    import sys

    port = free_port()
    argv = [sys.executable, "-m", "dayfly.cli.main", "up", "--port", str(port), "--data-dir",
            str(data), "--log-level", "warning"] + (["--isolation", isolation] if isolation else [])
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=1)) as c:
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("dayfly up did not start")
