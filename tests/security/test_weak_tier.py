"""The weak `process` tier is the operator's choice, never a caller's: every API that can set a
function's tier refuses it (400, naming the flag) unless `dayfly up` was started with
--allow-weak-isolation or --isolation process; where it runs, every view of the function
labels it weak and shows only the limits it enforces (docs/security.md)."""

from __future__ import annotations

import base64
import json
import shutil

import httpx
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from conftest import ALLOW_WEAK, make_zip, start_server, stop_server

from dayfly.cli.main import cli

FLAG = "--allow-weak-isolation"
LABEL = "weak isolation: no network/filesystem/process isolation"
HANDLER = "def handler(event, context):\n    return {'pid_ok': True, 'event': event}\n"
PROCESS_TOML = 'handler = "handler.handler"\nisolation = "process"\n'
LAMBDA = "/2015-03-31/functions"
# a machine with no isolating tier: a user namespace that may not make any more of them
# (its own user.max_user_namespaces; the host's stays as it is), where `linux` is unavailable
NO_STRONG_TIER = ("unshare", "--user", "--map-root-user", "sh", "-c",
                  'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh")


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A node started the default way: no opt-in."""
    srv = start_server(tmp_path_factory.mktemp("strict") / "data")
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def allowed(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("allowed") / "data", *ALLOW_WEAK)
    try:
        yield srv
    finally:
        stop_server(srv)


def create_body(name: str, files: dict[str, str] | None = None, **dayfly) -> dict:
    code = base64.b64encode(make_zip(files or {"handler.py": HANDLER})).decode()
    body = {"FunctionName": name, "Runtime": "python3.11", "Handler": "handler.handler",
            "Role": "arn:aws:iam::000000000000:role/x", "Code": {"ZipFile": code}}
    if dayfly:
        body["Dayfly"] = dayfly
    return body


def refused(r: httpx.Response) -> str:
    """The message of a 400 that refuses the weak tier (and names the opt-in)."""
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["x-amzn-errortype"] == "InvalidParameterValueException", r.headers
    message = r.json()["message"]
    assert FLAG in message and "'process'" in message, message
    assert "/tmp/" not in message and "/data" not in message, message  # no host path
    return message


def deploy_stream(url: str, name: str, files: dict[str, str]) -> list[dict]:
    r = httpx.post(f"{url}/dayfly/v1/functions/{name}/deploy", content=make_zip(files),
                   headers={"content-type": "application/zip"}, timeout=120)
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def dayfly(server, *args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False,
                              env={"DAYFLY_ENDPOINT": server.url, "COLUMNS": "200"})


def config(url: str, name: str) -> dict:
    r = httpx.get(f"{url}{LAMBDA}/{name}")
    assert r.status_code == 200, r.text
    return r.json()["Configuration"]


# -- without the opt-in: every path that sets a tier refuses `process` ------------------------


def test_create_function_asking_for_process_is_refused(strict):
    r = httpx.post(f"{strict.url}{LAMBDA}", json=create_body("asks-process", Isolation="process"),
                   timeout=60)
    refused(r)
    assert httpx.get(f"{strict.url}{LAMBDA}/asks-process").status_code == 404


def test_create_function_with_a_manifest_asking_for_process_is_refused(strict):
    lam = strict.lambda_client()
    with pytest.raises(ClientError) as err:
        lam.create_function(FunctionName="manifest-process", Runtime="python3.11",
                            Role="arn:aws:iam::000000000000:role/x", Handler="handler.handler",
                            Code={"ZipFile": make_zip({"handler.py": HANDLER,
                                                       "dayfly.toml": PROCESS_TOML})})
    e = err.value.response
    assert e["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert FLAG in e["Error"]["Message"], e


def test_updates_cannot_move_a_function_to_process(strict):
    r = httpx.post(f"{strict.url}{LAMBDA}", json=create_body("stays-strong"), timeout=60)
    assert r.status_code == 201, r.text
    tier = r.json()["Dayfly"]["Isolation"]
    assert tier != "process" and r.json()["Dayfly"]["IsolationWeak"] is False
    # UpdateFunctionConfiguration
    refused(httpx.put(f"{strict.url}{LAMBDA}/stays-strong/configuration",
                      json={"Dayfly": {"Isolation": "process"}}, timeout=60))
    # UpdateFunctionCode with a manifest that asks for it
    code = base64.b64encode(make_zip({"handler.py": HANDLER, "dayfly.toml": PROCESS_TOML}))
    refused(httpx.put(f"{strict.url}{LAMBDA}/stays-strong/code",
                      json={"ZipFile": code.decode()}, timeout=60))
    # the dayfly deploy API (what `dayfly deploy` uses), same manifest
    last = deploy_stream(strict.url, "stays-strong", {"handler.py": HANDLER,
                                                      "dayfly.toml": PROCESS_TOML})[-1]
    assert last["error"]["status"] == 400 and FLAG in last["error"]["message"], last
    assert config(strict.url, "stays-strong")["Dayfly"]["Isolation"] == tier


def test_the_deploy_api_refuses_a_new_process_function(strict):
    last = deploy_stream(strict.url, "new-process", {"handler.py": HANDLER,
                                                     "dayfly.toml": PROCESS_TOML})[-1]
    assert last["error"]["status"] == 400, last
    assert FLAG in last["error"]["message"], last
    assert httpx.get(f"{strict.url}{LAMBDA}/new-process").status_code == 404


def test_a_builtin_asking_for_process_is_refused(strict):
    r = httpx.post(f"{strict.url}/dayfly/v1/builtins/compress/deploy", timeout=120,
                   json={"name": "zip-process",
                         "config": {"source_bucket": "inbox", "target_bucket": "outbox",
                                    "isolation": "process"}})
    if r.status_code == 200:  # the refusal comes on the progress stream
        last = [json.loads(x) for x in r.text.splitlines() if x.strip()][-1]
        assert last["error"]["status"] == 400 and FLAG in last["error"]["message"], last
    else:
        refused(r)
    assert httpx.get(f"{strict.url}{LAMBDA}/zip-process").status_code == 404


def test_the_cli_says_how_to_allow_it(strict, tmp_path):
    folder = tmp_path / "weakling"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    (folder / "dayfly.toml").write_text(PROCESS_TOML)
    result = dayfly(strict, "deploy", str(folder))
    assert result.exit_code != 0
    assert FLAG in " ".join(result.output.split()), result.output


def test_healthz_says_the_weak_tier_is_refused(strict):
    iso = httpx.get(f"{strict.url}/healthz").json()["isolation"]
    assert iso["refused"] == ["process"] and "process" not in iso["available"], iso


# -- with the opt-in: allowed, and labelled weak wherever it is shown -------------------------


def test_the_opt_in_allows_process_and_every_view_labels_it(allowed):
    r = httpx.post(f"{allowed.url}{LAMBDA}", json=create_body("weak-fn", Isolation="process"),
                   timeout=60)
    assert r.status_code == 201, r.text
    strong = httpx.post(f"{allowed.url}{LAMBDA}", json=create_body("strong-fn"), timeout=60)
    assert strong.status_code == 201, strong.text
    views = {
        "CreateFunction": r.json(),
        "GetFunction": config(allowed.url, "weak-fn"),
        "GetFunctionConfiguration": httpx.get(
            f"{allowed.url}{LAMBDA}/weak-fn/configuration").json(),
        "ListFunctions": next(f for f in httpx.get(f"{allowed.url}{LAMBDA}/").json()["Functions"]
                              if f["FunctionName"] == "weak-fn"),
    }
    for where, cfg in views.items():
        d = cfg["Dayfly"]
        assert d["Isolation"] == "process" and d["IsolationWeak"] is True, (where, d)
        assert d["IsolationWarning"] == LABEL, (where, d)
        assert {"Network", "Files", "Buckets", "Secrets", "Pids", "EphemeralStorage"} <= set(
            d["NotEnforced"]), (where, d)
    d = config(allowed.url, "strong-fn")["Dayfly"]
    assert d["IsolationWeak"] is False and d["IsolationWarning"] is None
    assert d["NotEnforced"] == []
    inv = httpx.post(f"{allowed.url}{LAMBDA}/weak-fn/invocations", json={"x": 1}, timeout=60)
    assert inv.status_code == 200 and inv.json()["event"] == {"x": 1}, inv.text
    # the dashboard's data: the function views of the dayfly API
    stats = httpx.get(f"{allowed.url}/dayfly/v1/stats").json()["functions"]
    assert stats["weak-fn"]["isolation_weak"] is True
    assert stats["strong-fn"]["isolation_weak"] is False
    instances = httpx.get(f"{allowed.url}/dayfly/v1/functions/weak-fn/instances").json()
    assert instances["instances"] and all(i["isolation_weak"] for i in instances["instances"])


def test_deploy_output_shows_only_what_the_weak_tier_enforces(allowed, tmp_path):
    weak, strong = tmp_path / "weak-cli", tmp_path / "strong-cli"
    for folder, toml in ((weak, PROCESS_TOML), (strong, 'handler = "handler.handler"\n')):
        folder.mkdir()
        (folder / "handler.py").write_text(HANDLER)
        (folder / "dayfly.toml").write_text(toml)
    out = dayfly(allowed, "deploy", str(weak))
    assert out.exit_code == 0, out.output
    summary, table = out.stdout.split("\n\n", 1)
    assert LABEL in summary, summary
    rows = {line.split()[0] for line in table.splitlines() if line.strip()}
    assert not rows & {"network", "files", "secrets", "buckets", "/tmp", "processes"}, table
    assert {"isolation", "memory", "timeout"} <= rows, table
    assert LABEL in table and "nothing else is: weak isolation" in table, table
    # a strong tier still lists every limit, and says everything else is off
    out = dayfly(allowed, "deploy", str(strong))
    assert out.exit_code == 0, out.output
    table = out.stdout.split("\n\n", 1)[1]
    assert LABEL not in out.stdout and "everything else is off" in table, table
    assert {"network", "/tmp", "processes"} <= {line.split()[0] for line in table.splitlines()
                                                if line.strip()}, table


def test_ls_labels_the_weak_function(allowed, tmp_path):
    folder = tmp_path / "weak-ls"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    (folder / "dayfly.toml").write_text(PROCESS_TOML)
    assert dayfly(allowed, "deploy", str(folder)).exit_code == 0
    strong = tmp_path / "strong-ls"
    strong.mkdir()
    (strong / "handler.py").write_text(HANDLER)
    assert dayfly(allowed, "deploy", str(strong)).exit_code == 0
    out = dayfly(allowed, "ls")
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "process (weak)" in lines["weak-ls"], out.stdout
    assert "weak" not in lines["strong-ls"], out.stdout
    assert LABEL in out.stdout


# -- the operator's other opt-ins, and a node that loses its opt-in ---------------------------


def test_choosing_process_as_the_default_tier_is_an_opt_in(tmp_path):
    srv = start_server(tmp_path / "data", "--isolation", "process")
    try:
        last = deploy_stream(srv.url, "by-default", {"handler.py": HANDLER})[-1]
        d = last["function"]["Dayfly"]
        assert d["Isolation"] == "process" and d["IsolationWarning"] == LABEL, last
        assert httpx.get(f"{srv.url}/healthz").json()["isolation"]["refused"] == []
        platform = httpx.get(f"{srv.url}/dayfly/v1/stats").json()["platform"]
        assert platform["isolation_warning"] == LABEL and not platform["isolation_refused"]
    finally:
        stop_server(srv)


def test_the_environment_variable_is_the_same_opt_in(tmp_path, monkeypatch):
    monkeypatch.setenv("DAYFLY_ALLOW_WEAK_ISOLATION", "1")  # inherited by `dayfly up`
    srv = start_server(tmp_path / "data")
    try:
        assert httpx.get(f"{srv.url}/healthz").json()["isolation"]["refused"] == []
        r = httpx.post(f"{srv.url}{LAMBDA}", json=create_body("by-env", Isolation="process"),
                       timeout=60)
        assert r.status_code == 201 and r.json()["Dayfly"]["IsolationWeak"] is True, r.text
    finally:
        stop_server(srv)


def test_a_machine_without_a_strong_tier_refuses_functions_until_the_operator_allows(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare")
    data = tmp_path / "data"
    srv = start_server(data, prefix=NO_STRONG_TIER)
    try:
        iso = httpx.get(f"{srv.url}/healthz").json()["isolation"]
        assert iso["default"] == "process" and iso["refused"] == ["process"], iso
        assert "linux" not in iso["available"], iso
        assert httpx.get(f"{srv.url}/dayfly/v1/stats").json()["platform"]["isolation_refused"]
        last = deploy_stream(srv.url, "nowhere", {"handler.py": HANDLER})[-1]
        assert last["error"]["status"] == 400, last
        message = last["error"]["message"]
        assert "default isolation tier is 'process'" in message and FLAG in message, message
        assert FLAG in srv.log()  # `dayfly up` said so at start
    finally:
        stop_server(srv)
    srv = start_server(data, *ALLOW_WEAK, prefix=NO_STRONG_TIER)
    try:
        last = deploy_stream(srv.url, "nowhere", {"handler.py": HANDLER})[-1]
        assert last["function"]["Dayfly"]["IsolationWeak"] is True, last
    finally:
        stop_server(srv)


def test_a_node_restarted_without_the_opt_in_runs_no_process_function(tmp_path):
    data = tmp_path / "data"
    srv = start_server(data, *ALLOW_WEAK)
    try:
        r = httpx.post(f"{srv.url}{LAMBDA}", json=create_body("stranded", Isolation="process"),
                       timeout=60)
        assert r.status_code == 201, r.text
    finally:
        stop_server(srv)
    srv = start_server(data)
    try:
        r = httpx.post(f"{srv.url}{LAMBDA}/stranded/invocations", json={}, timeout=60)
        assert r.status_code == 400, r.text
        assert "stranded" in srv.log() and FLAG in srv.log(), srv.log()[-2000:]
        # and it cannot be kept there by any update, nor published there
        refused(httpx.put(f"{srv.url}{LAMBDA}/stranded/configuration",
                          json={"Description": "still here"}, timeout=60))
        refused(httpx.post(f"{srv.url}{LAMBDA}/stranded/versions", json={}, timeout=60))
        versions = httpx.get(f"{srv.url}{LAMBDA}/stranded/versions").json()["Versions"]
        assert [v["Version"] for v in versions] == ["$LATEST"], versions
        # what does not run it still works: reserved concurrency, deletion
        r = httpx.put(f"{srv.url}/2017-10-31/functions/stranded/concurrency",
                      json={"ReservedConcurrentExecutions": 1}, timeout=60)
        assert r.status_code == 200, r.text
        assert httpx.delete(f"{srv.url}{LAMBDA}/stranded", timeout=60).status_code == 204
    finally:
        stop_server(srv)
