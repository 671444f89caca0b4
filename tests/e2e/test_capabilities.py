"""The capability manifest end to end: secrets, read-only files and declared egress."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from click.testing import CliRunner
from conftest import make_zip

from dayfly.cli.main import cli

PROBE = """
import json, os, urllib.request
def handler(event, context):
    op = event.get("op")
    if op == "env":
        return {k: os.environ.get(k) for k in event["keys"]}
    if op == "read":
        try:
            return open(event["path"]).read()
        except OSError as e:
            return f"error: {type(e).__name__}"
    if op == "write":
        try:
            open(event["path"], "w").write("x")
            return "written"
        except OSError as e:
            return f"error: {type(e).__name__}"
    if op == "http":
        try:
            return urllib.request.urlopen(event["url"], timeout=5).read().decode()
        except Exception as e:
            return f"error: {e}"
"""


def deploy(server, name: str, manifest: str, code: str = PROBE) -> dict:
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=make_zip({"handler.py": code, "dayfly.toml": manifest}),
                      headers={"content-type": "application/zip"}, timeout=120) as r:
        return [json.loads(line) for line in r.iter_lines() if line.strip()][-1]


def call(server, name: str, **event):
    r = httpx.post(f"{server.url}/2015-03-31/functions/{name}/invocations", json=event, timeout=30)
    assert r.status_code == 200
    return r.json()


def test_secrets_only_reach_functions_that_declare_them(server):
    assert httpx.put(f"{server.url}/dayfly/v1/secrets/API_TOKEN",
                     json={"value": "s3cret"}).status_code == 204
    assert "function" in deploy(server, "withsecret", 'secrets = ["API_TOKEN"]')
    assert "function" in deploy(server, "nosecret", "")
    assert call(server, "withsecret", op="env", keys=["API_TOKEN"]) == {"API_TOKEN": "s3cret"}
    assert call(server, "nosecret", op="env", keys=["API_TOKEN"]) == {"API_TOKEN": None}
    # a new value reaches the function on its next start (its pool is replaced)
    httpx.put(f"{server.url}/dayfly/v1/secrets/API_TOKEN", json={"value": "rotated"})
    assert call(server, "withsecret", op="env", keys=["API_TOKEN"]) == {"API_TOKEN": "rotated"}
    listed = httpx.get(f"{server.url}/dayfly/v1/secrets").json()["secrets"]
    assert [s["name"] for s in listed] == ["API_TOKEN"] and "rotated" not in json.dumps(listed)
    cfg = httpx.get(f"{server.url}/2015-03-31/functions/withsecret").json()
    assert "rotated" not in json.dumps(cfg)  # values never appear in the configuration


def test_undeclared_or_missing_secret_is_refused_at_deploy(server):
    out = deploy(server, "missingsecret", 'secrets = ["NOT_SET_ANYWHERE"]')
    assert out["error"]["status"] == 400 and "NOT_SET_ANYWHERE" in out["error"]["message"]


@pytest.fixture
def host_dir():
    """A host directory outside /tmp (which no function may declare)."""
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="dayfly-test-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d)


def test_declared_files_are_read_only_and_the_rest_is_invisible(server, host_dir):
    tmp_path = host_dir
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "model.txt").write_text("weights")
    (tmp_path / "private.txt").write_text("private")
    assert "function" in deploy(server, "files", f'files = ["{shared}"]')
    assert call(server, "files", op="read", path=str(shared / "model.txt")) == "weights"
    assert call(server, "files", op="write", path=str(shared / "new.txt")).startswith("error")
    assert call(server, "files", op="read", path=str(tmp_path / "private.txt")).startswith("error")


@pytest.mark.parametrize("path", ["/proc", "/", "/sys/kernel", "/tmp/x"])
def test_system_trees_cannot_be_declared(server, path):
    out = deploy(server, "badfiles", f'files = ["{path}"]')
    assert out["error"]["status"] == 400 and "cannot be mounted" in out["error"]["message"]


def test_the_data_dir_cannot_be_declared(server):
    for path in (server.data_dir, server.data_dir / "code", server.data_dir.parent):
        out = deploy(server, "datadir", f'files = ["{path}"]')
        assert out["error"]["status"] == 400
        assert ("dayfly's own data" in out["error"]["message"]
                or "cannot be mounted" in out["error"]["message"])


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def web():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_declared_egress_works_and_the_rest_is_refused(server, web):
    health = httpx.get(f"{server.url}/healthz").json()
    if health["isolation"]["default"] != "linux":
        pytest.skip("egress enforcement needs the linux tier (run as root)")
    assert "function" in deploy(server, "egress", f'network = ["127.0.0.1:{web}"]')
    assert call(server, "egress", op="http", url=f"http://127.0.0.1:{web}/") == "hello from the host"
    refused = call(server, "egress", op="http", url="http://127.0.0.1:5432/")
    assert "403" in refused
    assert "none" in deploy(server, "noegress", "")["function"]["Dayfly"]["Isolation"] or True
    blocked = call(server, "noegress", op="http", url=f"http://127.0.0.1:{web}/")
    assert blocked.startswith("error") and "hello" not in blocked


def test_cli_deploy_shows_capabilities_and_their_changes(server, tmp_path):
    fn = tmp_path / "capfn"
    fn.mkdir()
    (fn / "handler.py").write_text("def handler(e, c):\n    return 1\n")
    (fn / "dayfly.toml").write_text('memory = 128\n')
    runner = CliRunner()
    first = runner.invoke(cli, ["deploy", str(fn), "--endpoint", server.url])
    assert first.exit_code == 0, first.output
    assert "granted (everything else is off)" in first.output
    assert "network" in first.output and "none" in first.output
    (fn / "dayfly.toml").write_text('memory = 256\nnetwork = ["example.com:443"]\n')
    second = runner.invoke(cli, ["deploy", str(fn), "--endpoint", server.url])
    assert second.exit_code == 0, second.output
    assert "128 MiB → 256 MiB" in second.output
    assert "none → example.com:443" in second.output
