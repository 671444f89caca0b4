"""Streamed responses on routes and function URLs, read with httpx as they come: a generator
handler's yields as chunked transfer (its first yielded dict is the head), a FastAPI app's
server-sent events. The first piece reaches the client before the handler finishes: each
handler waits, after its first piece, for a file the test creates only once it has that piece."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from conftest import ALLOW_WEAK
from http_helpers import unique
from webapp_helpers import FASTAPI, TIERS, WAIT, deploy, gate_dir, vendored

SERVER_ARGS = ALLOW_WEAK
SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts

GENERATOR = WAIT + '''
def handler(event, context):
    q = event.get("queryStringParameters") or {}
    yield {"statusCode": 207, "headers": {"content-type": "text/plain", "x-kind": "gen"},
           "cookies": ["s=1"]}
    yield "first;"
    wait_for(q["gate"])
    yield b"second"
'''

SSE_APP = WAIT + '''
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

app = FastAPI()

@app.get("/events")
def events(gate: str):
    def gen():
        yield "data: one\\n\\n"
        wait_for(gate)
        yield "data: two\\n\\n"
    return StreamingResponse(gen(), media_type="text/event-stream")
'''


@pytest.fixture(scope="module")
def gates():
    with gate_dir() as path:
        yield path


@pytest.fixture(scope="module", params=TIERS)
def fns(request, server, gates):
    tier = request.param
    toml = f'isolation = "{tier}"\ntimeout = 30\nfiles = ["{gates}"]\n'
    gen, sse = unique(f"sgen-{tier}"), unique(f"ssse-{tier}")
    deploy(server, gen, {"h.py": GENERATOR, "dayfly.toml": 'handler = "h.handler"\n' + toml
                         + f'[http]\nroutes = ["GET /{gen}/stream"]\n'})
    deploy(server, sse, {"app.py": SSE_APP, **vendored(*FASTAPI), "dayfly.toml":
                         'handler = "app:app"\nkind = "asgi"\n' + toml})
    server.lambda_client().create_function_url_config(FunctionName=sse, AuthType="NONE")
    return gen, sse


@contextlib.contextmanager
def opened(url: str, **kw):
    with httpx.Client(timeout=30) as client, client.stream("GET", url, **kw) as r:
        yield r


def test_generator_on_a_route_streams_chunked(server, fns, gates, request):
    gen, _ = fns
    gate = gates / request.node.name
    with opened(f"{server.url}/{gen}/stream", params={"gate": str(gate)}) as r:
        assert r.status_code == 207 and r.headers["x-kind"] == "gen"
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        assert r.headers["set-cookie"] == "s=1"
        pieces = r.iter_raw()
        assert next(pieces) == b"first;"  # the handler is waiting for the gate now
        gate.touch()
        assert b"".join(pieces) == b"second"


def test_sse_from_an_asgi_app_at_its_function_url(server, fns, gates, request):
    _, sse = fns
    gate = gates / request.node.name
    with opened(f"{server.url}/url/{sse}/events", params={"gate": str(gate)}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "data: one"
        gate.touch()
        assert [line for line in lines if line] == ["data: two"]
