"""Helpers for trigger tests: deploy a recording function, read what it received, talk to the
test PostgreSQL server. Not a conftest.py (see tests/e2e/e2e_helpers.py for why).

Recording functions use `isolation = "process"`: their handler appends what it received to a
file on the host, which the linux tier's read-only sandbox could not do.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_zip

PG_DSNS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")

RECORDER = """
import json, os, time

OUT = os.environ["OUT"]


def handler(event, context):
    start = time.time()
    with open(OUT, "a") as f:
        f.write(json.dumps({"t": start, "rid": context.aws_request_id, "event": event}) + "\\n")
    return behave(event)


def behave(event):
    return {"ok": True}
"""


def unique(hint: str = "fn") -> str:
    return f"{hint}-{uuid.uuid4().hex[:8]}"


def deploy(server, name: str, out: Path, behave: str = "", timeout: int = 10,
           extra_env: dict[str, str] | None = None) -> None:
    """Deploy a recorder that appends every event to `out`; `behave` may redefine behave()."""
    env = {"OUT": str(out), **(extra_env or {})}
    toml = (f'handler = "handler.handler"\nisolation = "process"\ntimeout = {timeout}\n'
            "[env]\n" + "".join(f'{k} = "{v}"\n' for k, v in env.items()))
    code = textwrap.dedent(RECORDER) + "\n" + textwrap.dedent(behave)
    r = httpx.post(f"{server.url}/dayfly/v1/functions/{name}/deploy",
                   content=make_zip({"handler.py": code, "dayfly.toml": toml}), timeout=120)
    assert r.status_code == 200, r.text
    last = json.loads(r.text.strip().splitlines()[-1])
    assert "function" in last, last


def received(out: Path) -> list[dict[str, Any]]:
    """Every invocation the recorder saw, oldest first."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def records(out: Path) -> list[dict[str, Any]]:
    """Every stream record delivered, in delivery order."""
    return [r for inv in received(out) for r in inv["event"].get("Records", [])]


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def pg_dsn() -> str:
    """A DSN of the test PostgreSQL server, or skip (strict CI turns the skip into a failure)."""
    psycopg = pytest.importorskip("psycopg")
    errors = []
    for dsn in PG_DSNS:
        try:
            with psycopg.connect(dsn, connect_timeout=3):
                return dsn
        except psycopg.Error as exc:
            errors.append(f"{dsn}: {exc}")
    pytest.skip("PostgreSQL is not reachable: " + "; ".join(errors))


def create_mapping(lam, function: str, source: str, **kw: Any) -> dict:
    params = {"FunctionName": function, "EventSourceArn": source,
              "StartingPosition": "LATEST", **kw}
    return lam.create_event_source_mapping(**params)
