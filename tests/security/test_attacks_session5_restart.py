"""kill -9 in the middle of session 5's new state (a layer version being published, a function
URL config, a provisioned concurrency config) and restart on the same data directory: what was
acknowledged is there and works, what was not is either whole or absent, and numbers are never
reused."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import threading
import time

import httpx
from conftest import children_of, make_zip, start_server, stop_server

ROLE = "arn:aws:iam::000000000000:role/restart"
ECHO = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'alive'}\n"
USES_LAYER = ("def handler(event, context):\n    import fromlayer\n"
              "    return fromlayer.WHO\n")


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if os.path.exists(f"/proc/{p}")}


def kill9(srv) -> None:
    """SIGKILL the node; its sandboxes must go by themselves (they are reaped if not)."""
    children = children_of(srv.proc.pid)
    stop_server(srv, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _alive(children)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived their node: {left}"


def layer_zip(who: str, pad: int = 0) -> bytes:
    return make_zip({"python/fromlayer.py": f"WHO = {who!r}\n",
                     "python/pad.bin": os.urandom(pad)})


def publish(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/2018-10-31/layers/{name}/versions", timeout=60,
                      json={"Content": {"ZipFile": base64.b64encode(data).decode()},
                            "CompatibleRuntimes": ["python3.11"]})


def versions(url: str, name: str) -> list[int]:
    r = httpx.get(f"{url}/2018-10-31/layers/{name}/versions")
    assert r.status_code == 200, r.text
    return [v["Version"] for v in r.json()["LayerVersions"]]


def test_layers_urls_and_provisioned_configs_survive_kill_9(tmp_path):
    data = tmp_path / "data"
    srv = start_server(data)
    try:
        lam = srv.lambda_client()
        # acknowledged state: a layer version, a URL config, a provisioned concurrency config
        acked = publish(srv.url, "kept", layer_zip("kept-1"))
        assert acked.status_code == 201, acked.text
        lam.create_function(FunctionName="web", Runtime="python3.11", Role=ROLE,
                            Handler="handler.handler",
                            Code={"ZipFile": make_zip({"handler.py": ECHO})})
        lam.create_function_url_config(FunctionName="web", AuthType="NONE")
        lam.publish_version(FunctionName="web")
        lam.put_provisioned_concurrency_config(FunctionName="web", Qualifier="1",
                                               ProvisionedConcurrentExecutions=1)
        # a publish cut off mid-body: the node has read half of it
        body = b'{"Content": {"ZipFile": "' + base64.b64encode(os.urandom(2_000_000)) + b'"}}'
        half = socket.create_connection(("127.0.0.1", srv.port))
        half.sendall(b"POST /2018-10-31/layers/halfway/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:len(body) // 2])
        # a publish cut off after its bundle is stored: its version may or may not be numbered
        big = layer_zip("raced", pad=3_000_000)
        digest = hashlib.sha256(big).hexdigest()
        racing = threading.Thread(target=lambda: _swallow(publish, srv.url, "raced", big))
        racing.start()
        deadline = time.monotonic() + 60
        while not (data / "bundles" / f"{digest}.zip").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (data / "bundles" / f"{digest}.zip").exists()
    finally:
        kill9(srv)
    half.close()
    racing.join(60)

    srv = start_server(data)
    try:
        lam = srv.lambda_client()
        assert versions(srv.url, "kept") == [1]
        got = lam.get_layer_version(LayerName="kept", VersionNumber=1)
        assert got["Content"]["CodeSha256"] == acked.json()["Content"]["CodeSha256"]
        assert versions(srv.url, "halfway") == []
        raced = versions(srv.url, "raced")
        assert raced in ([], [1]), raced
        # whole or absent: a numbered version works in a function; numbers are never reused
        again = publish(srv.url, "raced", layer_zip("raced-2"))
        assert again.status_code == 201 and again.json()["Version"] == len(raced) + 1
        for number in [*raced, again.json()["Version"]]:
            fn = f"uses-{number}"
            lam.create_function(FunctionName=fn, Runtime="python3.11", Role=ROLE,
                                Handler="handler.handler",
                                Layers=[f"arn:aws:lambda:us-east-1:000000000000:layer:raced:"
                                        f"{number}"],
                                Code={"ZipFile": make_zip({"handler.py": USES_LAYER})})
            out = lam.invoke(FunctionName=fn)["Payload"].read()
            assert out == (b'"raced"' if number == 1 and raced else b'"raced-2"'), out
        assert publish(srv.url, "kept", layer_zip("kept-2")).json()["Version"] == 2
        # the URL config: there, and serving
        assert lam.get_function_url_config(FunctionName="web")["AuthType"] == "NONE"
        assert httpx.get(f"{srv.url}/url/web/x").text == "alive"
        # the provisioned config: there, and its instance warmed again
        deadline = time.monotonic() + 60
        while True:
            c = lam.get_provisioned_concurrency_config(FunctionName="web", Qualifier="1")
            if c["Status"] == "READY" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert c["RequestedProvisionedConcurrentExecutions"] == 1 and c["Status"] == "READY", c
    finally:
        stop_server(srv)


def _swallow(fn, *args) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the node was killed under it
        fn(*args)
