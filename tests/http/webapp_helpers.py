"""Shared by tests/http's web app and streaming tests: real FastAPI / Flask apps deployed as
functions with their dependencies vendored into the bundle (taken from this test environment,
so no index is needed), API Gateway payload 2.0 events, and a gate a handler waits on."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
from conftest import make_zip

TIERS = ("process", "linux", "gvisor")
FASTAPI = ("fastapi", "python-multipart")  # distributions, with what they require
FLASK = ("flask",)


def vendored(*dists: str) -> dict[str, bytes]:
    """The files of these distributions and everything they require, as this environment has
    them (pip install -e '.[test]'), for a bundle."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    def key(name: str) -> str:
        return name.lower().replace("_", "-")

    modules: dict[str, set[str]] = {}
    for mod, owners in md.packages_distributions().items():
        for d in owners:
            modules.setdefault(key(d), set()).add(mod)
    seen: set[str] = set()
    todo = list(dists)
    while todo:
        name = todo.pop()
        if key(name) in seen:
            continue
        seen.add(key(name))
        for r in md.requires(name) or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    out: dict[str, bytes] = {}
    for name in sorted(m for d in seen for m in modules.get(d, ())):
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is not installed (pip install -e '.[test]')"
        if spec.submodule_search_locations:  # a package (maybe a namespace package)
            root = Path(next(iter(spec.submodule_search_locations)))
            for path in root.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    out[f"{name}/{path.relative_to(root)}"] = path.read_bytes()
        elif spec.origin:
            out[Path(spec.origin).name] = Path(spec.origin).read_bytes()
    return out


def deploy(server, name: str, files: dict[str, str | bytes]) -> dict:
    """Deploy a bundle (its dayfly.toml included) over dayfly's deploy API."""
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=make_zip(files), headers={"content-type": "application/zip"},
                      timeout=300) as r:
        lines = [orjson.loads(line) for line in r.iter_lines() if line.strip()]
    assert r.status_code == 200 and "function" in lines[-1], lines[-1:]
    return lines[-1]["function"]


def event(method: str, path: str, query: str = "", headers: dict | None = None,
          cookies: list[str] | None = None, body: bytes = b"", binary: bool = False) -> dict:
    """An API Gateway HTTP API payload 2.0 event, as a route or function URL delivers it."""
    ev: dict = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"host": "fn.example", "x-forwarded-proto": "https",
                    "user-agent": "tests", **(headers or {})},
        "requestContext": {"accountId": "000000000000", "apiId": "local", "domainName":
                           "fn.example", "domainPrefix": "fn", "requestId": str(uuid.uuid4()),
                           "routeKey": "$default", "stage": "$default", "time":
                           "07/Dec/2026:19:00:00 +0000", "timeEpoch": 1796670000000,
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "198.51.100.7", "userAgent": "tests"}},
        "isBase64Encoded": binary,
    }
    if cookies:
        ev["cookies"] = cookies
    if body:
        ev["body"] = base64.b64encode(body).decode() if binary else body.decode()
    return ev


def invoke(server, name: str, ev: dict) -> tuple[dict, httpx.Response]:
    r = httpx.post(f"{server.url}/2015-03-31/functions/{name}/invocations", json=ev, timeout=60)
    assert r.status_code == 200, r.text
    return (orjson.loads(r.content) if "x-amz-function-error" not in r.headers
            else {"error": orjson.loads(r.content)}), r


def body_of(out: dict) -> bytes:
    return base64.b64decode(out["body"]) if out.get("isBase64Encoded") else out["body"].encode()


@contextlib.contextmanager
def gate_dir() -> Iterator[Path]:
    """A directory a handler can see in every tier (mounted read-only with `files`; /tmp may
    not be), where the test creates the file the handler waits for."""
    path = Path(tempfile.mkdtemp(prefix="dayfly-gate-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


WAIT = """
import os, time

def wait_for(path, limit=20.0):
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
"""
