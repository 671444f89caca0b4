"""Native egress end to end (issue 16, point 5): a function with real psycopg and redis-py,
vendored into its bundle from this test environment (no index needed), and the services it
talks to (the machine's PostgreSQL and Redis). Shared by tests/e2e/test_native_egress.py and
benchmarks/egress.py."""

from __future__ import annotations

import importlib.metadata as md
import io
import socket
import zipfile

import httpx
import orjson

CLIENTS = ("psycopg", "psycopg-binary", "redis")  # distributions, with what they require

HANDLER = '''
import errno, os, socket, time
import psycopg, redis


def _failure(exc):
    code = getattr(exc, "errno", None)
    return {"type": type(exc).__name__, "errno": errno.errorcode.get(code, code),
            "text": str(exc)[:300]}


def _probe(p):
    """Something that must fail: returns how it failed (or "REACHED")."""
    try:
        if p["kind"] == "tcp":
            socket.create_connection((p["host"], p["port"]), timeout=3).close()
        elif p["kind"] == "dns":
            socket.getaddrinfo(p["host"], 443)
        elif p["kind"] == "pg":
            psycopg.connect(p["dsn"], connect_timeout=3).close()
        elif p["kind"] == "redis":
            redis.Redis(host=p["host"], port=p["port"], socket_connect_timeout=3).ping()
        return "REACHED"
    except Exception as exc:
        return _failure(exc)


def handler(event, context):
    out = {"proxy_env": sorted(k for k in os.environ if "proxy" in k.lower())}
    tag = event.get("tag", "")
    for dsn in event.get("pg", []):  # a row written through each declared way to PostgreSQL
        with psycopg.connect(dsn, connect_timeout=5, application_name="dayfly-egress") as conn:
            conn.execute("INSERT INTO seen (tag, via) VALUES (%s, %s)", (tag, dsn))
        out.setdefault("pg", []).append(dsn)
    if "redis" in event:
        host, port = event["redis"]
        r = redis.Redis(host=host, port=port, socket_timeout=5, socket_connect_timeout=5)
        r.set(tag, context.function_name, ex=60)
        out["redis"] = r.get(tag).decode()
    if "bench" in event:  # SELECT 1 round trips on one open connection, in microseconds
        with psycopg.connect(event["bench"], connect_timeout=5, autocommit=True) as conn:
            for _ in range(event.get("warmup", 50)):
                conn.execute("SELECT 1").fetchone()
            samples = []
            for _ in range(event["samples"]):
                t0 = time.perf_counter_ns()
                conn.execute("SELECT 1").fetchone()
                samples.append((time.perf_counter_ns() - t0) / 1000)
        out["samples"] = samples
    out["probes"] = [_probe(p) for p in event.get("probes", [])]
    return out
'''


def vendored(*dists: str) -> dict[str, bytes]:
    """Every installed file of these distributions and what they require (RECORD: compiled
    extensions and the shared libraries beside them too), for a bundle."""
    from packaging.requirements import Requirement

    files: dict[str, bytes] = {}
    seen: set[str] = set()
    todo = list(dists)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        dist = md.distribution(name)
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        for f in dist.files or []:
            if f.parts[0] == ".." or "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            files[str(f)] = f.locate().read_bytes()
    return files


def bundle(toml: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", HANDLER)
        zf.writestr("dayfly.toml", toml)
        for path, data in vendored(*CLIENTS).items():
            zf.writestr(path, data)
    return buf.getvalue()


def deploy(url: str, name: str, toml: str) -> dict:
    """Deploy over dayfly's deploy API; the last line (the function, or the error)."""
    with httpx.stream("POST", f"{url}/dayfly/v1/functions/{name}/deploy", content=bundle(toml),
                      headers={"content-type": "application/zip"}, timeout=300) as r:
        lines = [orjson.loads(line) for line in r.iter_lines() if line.strip()]
    return {"status": r.status_code, **(lines[-1] if lines else {})}


def invoke(url: str, name: str, event: dict, timeout: float = 120) -> dict:
    r = httpx.post(f"{url}/2015-03-31/functions/{name}/invocations", json=event,
                   timeout=timeout)
    assert r.status_code == 200 and "x-amz-function-error" not in r.headers, (
        r.status_code, r.text[:2000])
    return r.json()


def machine_name() -> str | None:
    """This machine's host name if it resolves to a loopback address here (where the
    machine's services listen), else None."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return None
    return name if address.startswith("127.") else None
