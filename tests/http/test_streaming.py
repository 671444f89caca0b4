"""Response streaming: Lambda's InvokeWithResponseStream read with boto3's
`invoke_with_response_stream` (the vnd.amazon.eventstream framing), from generator handlers
and an ASGI app's StreamingResponse (server-sent events), in the process, linux and gvisor tiers.

The first byte must reach the client before the handler finishes: each handler yields a piece,
then waits for a file that the test creates only once it has received that piece."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from conftest import ALLOW_WEAK
from webapp_helpers import FASTAPI, TIERS, WAIT, deploy, gate_dir, vendored

SERVER_ARGS = ALLOW_WEAK

GENERATOR = WAIT + '''
import os

def handler(event, context):
    if event.get("head"):
        yield {"statusCode": 201, "headers": {"Content-Type": "text/event-stream"},
               "cookies": ["s=1"]}
    yield b"first;"
    if event.get("gate"):
        wait_for(event["gate"])
    if event.get("fail"):
        raise ValueError("failed mid-stream")
    if event.get("hang"):
        wait_for("/nonexistent", 60)
    for _ in range(event.get("mib", 0) * 16):
        yield b"x" * 65536
    yield "second"
'''

WHOLE = '''
def handler(event, context):
    print("a log line")
    return {"whole": True}
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
    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})
'''


@pytest.fixture(scope="module")
def gates():
    with gate_dir() as path:
        yield path


@pytest.fixture(scope="module", params=TIERS)
def fns(request, server, gates):
    tier = request.param
    toml = f'isolation = "{tier}"\ntimeout = 30\nfiles = ["{gates}"]\n'
    names = {k: f"{k}-{tier}" for k in ("gen", "whole", "sse", "short")}
    deploy(server, names["gen"], {"h.py": GENERATOR, "dayfly.toml": 'handler = "h.handler"\n' + toml})
    deploy(server, names["short"], {"h.py": GENERATOR, "dayfly.toml": 'handler = "h.handler"\n'
                                    + toml.replace("timeout = 30", "timeout = 2")})
    deploy(server, names["whole"], {"h.py": WHOLE, "dayfly.toml": 'handler = "h.handler"\n' + toml})
    deploy(server, names["sse"], {"app.py": SSE_APP, **vendored(*FASTAPI),
                                  "dayfly.toml": 'handler = "app:app"\nkind = "asgi"\n' + toml})
    return names


def test_first_piece_arrives_before_the_handler_finishes(server, fns, gates, request):
    lam = server.lambda_client()
    gate = gates / f"{request.node.name}"
    out = lam.invoke_with_response_stream(FunctionName=fns["gen"],
                                          Payload=json.dumps({"gate": str(gate)}).encode())
    assert out["StatusCode"] == 200
    assert out["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    assert out["ExecutedVersion"] == "$LATEST"
    events = iter(out["EventStream"])
    assert next(events) == {"PayloadChunk": {"Payload": b"first;"}}  # the handler waits now
    gate.touch()
    assert list(events) == [{"PayloadChunk": {"Payload": b"second"}}, {"InvokeComplete": {}}]


def test_sse_from_an_asgi_app(server, fns, gates, request):
    """The head goes first, as Lambda's HttpResponseStream prelude (JSON, then 8 NULs)."""
    lam = server.lambda_client()
    gate = gates / f"{request.node.name}"
    ev = {"version": "2.0", "rawPath": "/events", "rawQueryString": f"gate={gate}",
          "headers": {"host": "fn.example"},
          "requestContext": {"http": {"method": "GET", "sourceIp": "192.0.2.1"}}}
    out = lam.invoke_with_response_stream(FunctionName=fns["sse"], Payload=json.dumps(ev).encode())
    events = iter(out["EventStream"])
    prelude = next(events)["PayloadChunk"]["Payload"]
    assert prelude.endswith(b"\0" * 8)
    head = json.loads(prelude[:-8])
    assert head["statusCode"] == 200
    assert head["headers"]["content-type"].startswith("text/event-stream")
    assert head["headers"]["cache-control"] == "no-cache"
    assert next(events) == {"PayloadChunk": {"Payload": b"data: one\n\n"}}
    gate.touch()
    assert list(events) == [{"PayloadChunk": {"Payload": b"data: two\n\n"}}, {"InvokeComplete": {}}]


def test_generator_head(server, fns, gates):
    lam = server.lambda_client()
    out = lam.invoke_with_response_stream(FunctionName=fns["gen"],
                                          Payload=json.dumps({"head": True}).encode())
    chunks = [e["PayloadChunk"]["Payload"] for e in out["EventStream"] if "PayloadChunk" in e]
    assert json.loads(chunks[0][:-8]) == {"statusCode": 201, "cookies": ["s=1"],
                                          "headers": {"content-type": "text/event-stream"}}
    assert b"".join(chunks[1:]) == b"first;second"


def test_error_mid_stream_ends_the_stream_with_it(server, fns, gates):
    lam = server.lambda_client()
    out = lam.invoke_with_response_stream(FunctionName=fns["gen"],
                                          Payload=json.dumps({"fail": True}).encode())
    assert list(out["EventStream"]) == [
        {"PayloadChunk": {"Payload": b"first;"}},
        {"InvokeComplete": {"ErrorCode": "ValueError", "ErrorDetails": "failed mid-stream"}}]


def test_timeout_mid_stream(server, fns):
    lam = server.lambda_client()
    out = lam.invoke_with_response_stream(FunctionName=fns["short"],
                                          Payload=json.dumps({"hang": True}).encode())
    events = list(out["EventStream"])
    assert events[0] == {"PayloadChunk": {"Payload": b"first;"}}
    assert events[1]["InvokeComplete"]["ErrorCode"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in events[1]["InvokeComplete"]["ErrorDetails"]


def test_big_stream_and_its_limit(server, fns):
    """16 MiB arrive whole (the host reads only as fast as the client takes them); past
    20 MiB the function fails with Lambda's size error."""
    lam = server.lambda_client()
    out = lam.invoke_with_response_stream(FunctionName=fns["gen"],
                                          Payload=json.dumps({"mib": 16}).encode())
    events = list(out["EventStream"])
    body = b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e)
    assert body == b"first;" + b"x" * (16 << 20) + b"second"
    assert events[-1] == {"InvokeComplete": {}}
    out = lam.invoke_with_response_stream(FunctionName=fns["gen"],
                                          Payload=json.dumps({"mib": 21}).encode())
    events = list(out["EventStream"])
    body = b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e)
    assert len(body) <= 20 << 20
    assert events[-1]["InvokeComplete"]["ErrorCode"] == "Function.ResponseSizeTooLarge"


def test_a_function_that_returns_answers_in_one_piece(server, fns):
    lam = server.lambda_client()
    out = lam.invoke_with_response_stream(FunctionName=fns["whole"], Payload=b"{}",
                                          LogType="Tail")
    events = list(out["EventStream"])
    assert events[0] == {"PayloadChunk": {"Payload": b'{"whole": true}'}}
    assert "a log line" in base64.b64decode(events[1]["InvokeComplete"]["LogResult"]).decode()


def test_plain_invoke_of_a_streaming_handler_gets_it_whole(server, fns):
    r = httpx.post(f"{server.url}/2015-03-31/functions/{fns['gen']}/invocations", json={})
    assert r.content == b"first;second"
    r = httpx.post(f"{server.url}/2015-03-31/functions/{fns['gen']}/invocations",
                   json={"head": True})
    assert r.json() == {"statusCode": 201, "headers": {"content-type": "text/event-stream"},
                        "cookies": ["s=1"], "body": "first;second", "isBase64Encoded": False}


def test_stream_requests_are_checked(server, fns):
    url = f"{server.url}/2021-11-15/functions/{fns['gen']}/response-streaming-invocations"
    r = httpx.post(url, content=b"{not json")
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    r = httpx.post(url, content=b"{}", headers={"x-amz-invocation-type": "Event"})
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "InvalidParameterValueException"
    r = httpx.post(url, content=b"{}", headers={"x-amz-invocation-type": "DryRun"})
    assert r.status_code == 204
    r = httpx.post(url.replace(fns["gen"], "nope"), content=b"{}")
    assert r.status_code == 404


async def test_http_response_writes_a_streamed_answer():
    """What routes and function URLs answer with: the head's status, headers and cookies, then
    the pieces (chunked transfer)."""
    from dayfly.gateway.streaming import Streamed, http_response

    async def pieces():
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    streamed = Streamed(head={"statusCode": 202, "headers": {"content-type": "text/event-stream"},
                              "cookies": ["a=1; Path=/", "b=2"]}, body=pieces())

    async def app(scope, receive, send):
        await http_response(streamed)(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://fn") as client:
        r = await client.get("/")
    assert r.status_code == 202 and r.headers["content-type"] == "text/event-stream"
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]
    assert "content-length" not in r.headers
    assert r.content == b"data: one\n\ndata: two\n\n"


def test_a_streamed_head_keeps_only_what_is_well_formed():
    """An instance cannot make the host write a broken or split response."""
    from dayfly.scheduler.stream import _head

    meta = json.dumps({"head": {"statusCode": 201, "cookies": ["a=1", 5, "b=2\r\nX: y"],
                                "headers": {"X-A": "1", "bad\r\n": "x", "b": "v\r\nX-Injected: 1",
                                            "n": 3}}}).encode()
    assert _head(meta) == {"statusCode": 201, "headers": {"x-a": "1"}, "cookies": ["a=1"]}
    assert _head(json.dumps({"head": {"statusCode": 99}}).encode())["statusCode"] == 200
    assert _head(b"not json") is None and _head(b"[1]") is None and _head(b'{"head": 3}') is None
