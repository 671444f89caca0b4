"""Web frameworks as functions: real FastAPI (ASGI) and Flask (WSGI) apps, `kind = "asgi"` /
`"wsgi"` and `handler = "app:app"` in dayfly.toml, no adapter library in their code. Each is
called with API Gateway payload 2.0 events (what routes and function URLs deliver) through
Lambda's Invoke, in the process, linux and gvisor tiers."""

from __future__ import annotations

import hashlib
import time

import httpx
import orjson
import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from conftest import ALLOW_WEAK
from webapp_helpers import FASTAPI, FLASK, TIERS, body_of, deploy, event, invoke, vendored

SERVER_ARGS = ALLOW_WEAK

FASTAPI_APP = '''
import contextlib, hashlib, os
from fastapi import FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.responses import RedirectResponse

STARTS = {"n": 0}

@contextlib.asynccontextmanager
async def lifespan(app):
    STARTS["n"] += 1
    yield {"greeting": "hello from lifespan"}
    if os.environ.get("SHUTDOWN_FILE"):
        with open(os.environ["SHUTDOWN_FILE"], "a") as f:
            f.write("shutdown\\n")

app = FastAPI(lifespan=lifespan)

@app.get("/items/{item_id}")
async def item(item_id: int, request: Request, q: str | None = None):
    return {"id": item_id, "q": q, "tags": request.query_params.getlist("tag"),
            "starts": STARTS["n"], "greeting": request.state.greeting,
            "client": request.client.host, "url": str(request.url),
            "agent": request.headers["user-agent"], "pid": os.getpid()}

@app.post("/form")
async def form(name: str = Form(...), colour: str = Form("blue")):
    return {"name": name, "colour": colour}

@app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form("")):
    data = await file.read()
    return {"filename": file.filename, "size": len(data), "type": file.content_type,
            "sha256": hashlib.sha256(data).hexdigest(), "note": note}

@app.get("/cookies")
async def cookies(request: Request, response: Response):
    response.set_cookie("a", "1")
    response.set_cookie("b", "2", httponly=True)
    return {"got": dict(request.cookies)}

@app.get("/redirect")
async def redirect():
    return RedirectResponse("/items/7", status_code=303)

@app.get("/binary")
async def binary():
    return Response(bytes(range(256)) * 4, media_type="application/octet-stream")

@app.get("/teapot")
async def teapot():
    raise HTTPException(418, "short and stout")

@app.get("/boom")
async def boom():
    raise RuntimeError("the app failed")
'''

RAW_ASGI = '''
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan here")  # served without one, as uvicorn does
    if scope["path"] == "/raise":
        raise ValueError("before any response")
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"text/plain"), (b"x-two", b"a"), (b"x-two", b"b")]})
    await send({"type": "http.response.body", "body": scope["path"].encode()})
'''

FLASK_APP = '''
import hashlib
from flask import Flask, jsonify, redirect, request, make_response, abort

app = Flask(__name__)

@app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify(id=item_id, q=request.args.get("q"), tags=request.args.getlist("tag"),
                   client=request.remote_addr, url=request.url)

@app.post("/form")
def form():
    return jsonify(name=request.form["name"], colour=request.form.get("colour", "blue"))

@app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(filename=f.filename, size=len(data), type=f.mimetype,
                   sha256=hashlib.sha256(data).hexdigest(), note=request.form.get("note", ""))

@app.get("/cookies")
def cookies():
    resp = make_response(jsonify(got=dict(request.cookies)))
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2", httponly=True)
    return resp

@app.get("/redirect")
def go():
    return redirect("/items/7", code=302)

@app.get("/binary")
def binary():
    return app.response_class(bytes(range(256)) * 4, mimetype="application/octet-stream")

@app.get("/teapot")
def teapot():
    abort(418)

@app.get("/boom")
def boom():
    raise RuntimeError("the app failed")
'''


def _toml(kind: str, tier: str, extra: str = "") -> str:
    return f'handler = "app:app"\nkind = "{kind}"\nisolation = "{tier}"\ntimeout = 30\n{extra}'


@pytest.fixture(scope="module", params=TIERS)
def apps(request, server, tmp_path_factory):
    """name of the FastAPI, Flask and raw ASGI functions in one tier."""
    tier = request.param
    marks = tmp_path_factory.mktemp("shutdown")
    names = {"fastapi": f"fastapi-{tier}", "flask": f"flask-{tier}", "raw": f"raw-{tier}"}
    env = f'[env]\nSHUTDOWN_FILE = "{marks}/fastapi-{tier}"\n' if tier == "process" else ""
    deploy(server, names["fastapi"], {"app.py": FASTAPI_APP, **vendored(*FASTAPI),
                                      "dayfly.toml": _toml("asgi", tier, env)})
    deploy(server, names["flask"], {"app.py": FLASK_APP, **vendored(*FLASK),
                                    "dayfly.toml": _toml("wsgi", tier)})
    deploy(server, names["raw"], {"app.py": RAW_ASGI, "dayfly.toml": _toml("asgi", tier)})
    return tier, names, marks


FRAMEWORKS = ("fastapi", "flask")


def test_events_are_api_gateway_v2():
    APIGatewayProxyEventV2Model(**event("GET", "/items/1", "q=x", cookies=["a=1"],
                                        body=b"\x00\x01", binary=True))


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_path_parameters_and_query_strings(server, apps, fw):
    _, names, _ = apps
    out, _ = invoke(server, names[fw], event("GET", "/items/42", "q=hello%20world&tag=a&tag=b"))
    assert out["statusCode"] == 200 and out["headers"]["content-type"] == "application/json"
    got = orjson.loads(out["body"])
    assert (got["id"], got["q"], got["tags"]) == (42, "hello world", ["a", "b"])
    assert got["client"] == "198.51.100.7"
    assert got["url"] == "https://fn.example/items/42?q=hello%20world&tag=a&tag=b"
    bad, _ = invoke(server, names[fw], event("GET", "/items/notanumber"))
    assert bad["statusCode"] in (404, 422)  # Flask's int converter: no route; FastAPI: 422


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_form_posts(server, apps, fw):
    _, names, _ = apps
    out, _ = invoke(server, names[fw], event(
        "POST", "/form", headers={"content-type": "application/x-www-form-urlencoded"},
        body=b"name=J%C3%BCrgen+M&colour=green"))
    assert out["statusCode"] == 200, out
    assert orjson.loads(out["body"]) == {"name": "Jürgen M", "colour": "green"}


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_file_uploads(server, apps, fw):
    _, names, _ = apps
    data = bytes(range(256)) * 300 + b"\r\n--not-the-boundary\r\n"
    boundary = "----dayflyboundary7MA4YWxkTrZu0gW"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"blob.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    out, _ = invoke(server, names[fw], event(
        "POST", "/upload", headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        body=body, binary=True))
    assert out["statusCode"] == 200, out
    assert orjson.loads(out["body"]) == {"filename": "blob.bin", "size": len(data),
                                         "type": "application/octet-stream", "note": "hi",
                                         "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_cookies_both_ways(server, apps, fw):
    _, names, _ = apps
    out, _ = invoke(server, names[fw], event("GET", "/cookies", cookies=["x=1", "y=two"]))
    assert orjson.loads(out["body"]) == {"got": {"x": "1", "y": "two"}}
    assert "set-cookie" not in out["headers"]
    assert [c.split(";")[0] for c in out["cookies"]] == ["a=1", "b=2"]
    assert "httponly" in out["cookies"][1].lower()


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_redirects(server, apps, fw):
    _, names, _ = apps
    out, _ = invoke(server, names[fw], event("GET", "/redirect"))
    assert out["statusCode"] == (303 if fw == "fastapi" else 302)
    assert out["headers"]["location"] in ("/items/7", "https://fn.example/items/7")


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_binary_stays_binary(server, apps, fw):
    _, names, _ = apps
    out, _ = invoke(server, names[fw], event("GET", "/binary"))
    assert out["isBase64Encoded"] is True
    assert body_of(out) == bytes(range(256)) * 4


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_errors(server, apps, fw):
    _, names, _ = apps
    out, _ = invoke(server, names[fw], event("GET", "/teapot"))
    assert out["statusCode"] == 418
    # an exception the framework turns into its own 500: that response stands
    out, r = invoke(server, names[fw], event("GET", "/boom"))
    assert "x-amz-function-error" not in r.headers
    assert out["statusCode"] == 500
    # the instance survived it
    out, _ = invoke(server, names[fw], event("GET", "/items/1"))
    assert out["statusCode"] == 200


def test_raw_asgi_app(server, apps):
    """An app without lifespan support is served; repeated headers are joined; an exception
    before any response is a function error (API Gateway answers it with 502)."""
    _, names, _ = apps
    out, _ = invoke(server, names["raw"], event("GET", "/caf%C3%A9"))
    assert out == {"statusCode": 201, "headers": {"content-type": "text/plain", "x-two": "a,b"},
                   "body": "/café", "isBase64Encoded": False}
    out, r = invoke(server, names["raw"], event("GET", "/raise"))
    assert r.headers["x-amz-function-error"] == "Unhandled"
    assert out["error"]["errorType"] == "ValueError"
    out, r = invoke(server, names["raw"], {"not": "an http event"})
    assert out["error"]["errorType"] == "ValueError"
    assert "API Gateway" in out["error"]["errorMessage"]


def test_lifespan_runs_once_per_instance_and_shuts_down(server, apps):
    """Startup ran once in this instance however often it serves (its state reaches requests);
    shutdown runs when the instance is retired (process tier: it can write a host file)."""
    tier, names, marks = apps
    pids, starts = set(), set()
    for _ in range(5):
        out, _ = invoke(server, names["fastapi"], event("GET", "/items/1"))
        got = orjson.loads(out["body"])
        assert got["greeting"] == "hello from lifespan"
        pids.add(got["pid"])
        starts.add(got["starts"])
    assert len(pids) == 1 and starts == {1}
    if tier != "process":
        return
    mark = marks / names["fastapi"]
    before = mark.read_text()  # the deploy's throwaway instance was retired too
    assert before == "shutdown\n"
    r = httpx.delete(f"{server.url}/dayfly/v1/functions/{names['fastapi']}/instances", timeout=30)
    assert r.status_code == 204, r.text
    deadline = time.monotonic() + 10
    while mark.read_text() == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mark.read_text() == "shutdown\n" * 2
