"""A function whose zygote was stopped for idleness answers its next invoke (issue 12, point 8).

The zygote's idle time is a setting (`dayfly up --zygote-idle`), so the stop comes in seconds;
the test waits for it by watching the zygote's process go, never by a sleep.
"""

from __future__ import annotations

import httpx
import pytest
from conftest import Server, children_of, start_server, stop_server
from e2e_helpers import create, invoke, unique_name, wait_for
from test_lifecycle import running

from dayfly.platform import available_backends

HANDLER = {"handler.py": """
    def handler(event, context):
        return {"ok": event.get("n")}
"""}


def zygotes(srv: Server) -> set[int]:
    """The server's zygote processes (its direct children running dayfly's zygote)."""
    out = set()
    for pid in children_of(srv.proc.pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == srv.proc.pid and b"dayfly.runtime.zygote" in cmdline:
            out.add(pid)
    return out


@pytest.mark.parametrize("tier", ["linux", "process"])
def test_the_invoke_after_an_idle_zygote_stopped_succeeds(tmp_path, tier):
    if tier not in available_backends():
        pytest.skip(f"the {tier} tier is not available here")
    srv = start_server(tmp_path / "data", "--isolation", tier, "--zygote-idle", "0.5")
    try:
        lam = srv.lambda_client()
        name = unique_name("idle")
        create(lam, name, HANDLER)
        resp, body = invoke(lam, name, {"n": 1})
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp and body == {"ok": 1}
        [zygote] = zygotes(srv)
        # the linux tier's zygote keeps a spare child besides the instance: wait until it is
        # there, so that the stop below retires a zygote that owns one
        wanted = 2 if tier == "linux" else 1
        assert wait_for(lambda: len(children_of(zygote)) >= wanted, timeout=30), \
            children_of(zygote)
        r = httpx.delete(f"{srv.url}/dayfly/v1/functions/{name}/instances", timeout=10)
        assert r.status_code == 204, r.text
        # with no instance left, the zygote is stopped once it has been idle 0.5 s (the
        # scheduler's maintenance pass runs every few seconds)
        assert wait_for(lambda: not running(zygote), timeout=60), "the zygote was not stopped"
        assert wait_for(lambda: "stopped: no instances" in srv.log(), timeout=10), srv.log()
        # httpx, not boto3: botocore would retry a 500 and hide it
        r = httpx.post(f"{srv.url}/2015-03-31/functions/{name}/invocations", json={"n": 2},
                       timeout=30)
        assert r.status_code == 200 and "X-Amz-Function-Error" not in r.headers, r.text
        assert r.json() == {"ok": 2}
        assert "no spare" not in srv.log()
        assert len(zygotes(srv)) == 1 and zygote not in zygotes(srv)  # a new one serves it
    finally:
        stop_server(srv)
