"""`dayfly routes` and GET /dayfly/v1/routes against a real node: every route with its
function, auth, payload version and limits, and every function URL with both its addresses."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
from http_helpers import deploy, unique

SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts


def cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dayfly.cli.main", "routes", "--endpoint",
                           server.url, *args], capture_output=True, text=True, timeout=60,
                          env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"})


def test_routes_lists_routes_and_urls(server, lam):
    name = unique("clifn")
    b = (f'{{ route = "POST /{name}/b", auth = "none", payload_version = "1.0", '
         'max_body = 2048, rate_limit = 5 }')  # TOML: an inline table is one line
    deploy(lam, name, f"""
        [http]
        auth = "token"
        routes = ["GET /{name}/a/{{id}}", {b}]
    """)
    lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    data = httpx.get(f"{server.url}/dayfly/v1/routes", params={"function": name}).json()
    by_key = {r["route"]: r for r in data["routes"]}
    assert by_key[f"GET /{name}/a/{{id}}"]["auth"] == "token"
    b = by_key[f"POST /{name}/b"]
    assert (b["auth"], b["payload_version"], b["max_body"]) == ("none", "1.0", 2048)
    assert b["rate_limit"] == {"rps": 5.0, "burst": 5.0}
    [url] = data["urls"]
    assert url["auth_type"] == "AWS_IAM" and url["url"].startswith(f"http://{name}.localhost:")
    assert url["path_url"] == f"{server.url}/url/{name}/"
    out = cli(server)
    assert out.returncode == 0, out.stderr
    assert f"GET /{name}/a/{{id}}" in out.stdout and "5/s (burst 5) per node" in out.stdout
    assert f"{name}.localhost" in out.stdout and "AWS_IAM" in out.stdout
    as_json = json.loads(cli(server, "--json", "--function", name).stdout)
    assert as_json == data
    # the function's configuration names its routes too (the dashboard reads it)
    conf = httpx.get(f"{server.url}/2015-03-31/functions/{name}/configuration").json()
    assert conf["Dayfly"]["Routes"] == [f"GET /{name}/a/{{id}}", f"POST /{name}/b"]
