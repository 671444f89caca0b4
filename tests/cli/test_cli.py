"""The `dayfly` CLI against a real `dayfly up`: what a person types, what they see."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import free_port

from dayfly.cli.main import cli

HANDLER = """
    def handler(event, context):
        print("handling", event)
        if event.get("fail"):
            raise ValueError("boom: " + str(event["fail"]))
        return {"got": event, "tag": TAG}

    TAG = "%s"
"""

RID = re.compile(r"START RequestId: ([0-9a-f-]{36})")


def dayfly(server, *args: str, input: str | None = None) -> Result:
    """Run the CLI in-process; an exception escaping it fails the test (no tracebacks)."""
    runner = CliRunner()
    return runner.invoke(cli, list(args), input=input, catch_exceptions=False,
                         env={"DAYFLY_ENDPOINT": server.url, "COLUMNS": None})


def write_function(folder: Path, tag: str = "v1", memory: int = 256, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(textwrap.dedent(HANDLER % tag))
    (folder / "dayfly.toml").write_text(f'handler = "handler.handler"\nmemory = {memory}\n')
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def deploy(server, folder: Path, *extra: str) -> Result:
    result = dayfly(server, "deploy", str(folder), *extra)
    assert result.exit_code == 0, result.output
    return result


def invoke_rid(server, name: str, payload: str = "{}") -> str:
    """Invoke with --log and return the request id from the log tail."""
    result = dayfly(server, "invoke", name, "--payload", payload, "--log")
    assert result.exit_code == 0, result.output
    m = RID.search(result.stderr)
    assert m, result.stderr
    return m.group(1)


# -- deploy --------------------------------------------------------------------------------


def test_deploy_shows_a_summary_named_after_the_folder(server, tmp_path):
    folder = write_function(tmp_path / "greeter", memory=256)
    result = deploy(server, folder)
    head = result.stdout.split("\n\n")[0]  # the summary; the capability table follows
    summary = dict(line.split(None, 1) for line in head.splitlines()
                   if line.strip() and not line.startswith("code"))
    assert summary["name"].strip() == "greeter"
    assert summary["version"].strip() == "$LATEST"
    assert summary["handler"].strip() == "handler.handler"
    assert summary["memory"].strip() == "256 MB"
    assert summary["timeout"].strip() == "3s"
    assert summary["isolation"].strip() in ("process", "linux", "gvisor")
    assert summary["runtime"].strip().startswith("python3.")
    sha = re.search(r"^code sha256\s+(\S+)", result.stdout, re.M).group(1)
    assert len(base64.b64decode(sha)) == 32
    assert "deploying greeter" in result.stderr  # progress goes to stderr, not the summary


def test_deploy_publish_creates_version_1(server, tmp_path):
    folder = write_function(tmp_path / "pub")
    result = deploy(server, folder, "--name", "published", "--publish")
    assert re.search(r"^version\s+1\s*$", result.stdout, re.M), result.stdout


def test_deploy_syntax_error_names_file_and_line(server, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "handler.py").write_text("def handler(event, context):\n    return (\n")
    result = dayfly(server, "deploy", str(folder))
    assert result.exit_code == 1
    assert "handler.py" in result.stderr
    assert "line 2" in result.stderr
    assert "SyntaxError" in result.stderr or "Syntax error" in result.stderr
    assert result.stdout == ""
    # nothing was created
    assert dayfly(server, "invoke", "broken").exit_code == 1


def test_deploy_refuses_a_bad_name_or_empty_folder_before_uploading(server, tmp_path):
    folder = write_function(tmp_path / "my.fn")
    result = dayfly(server, "deploy", str(folder))
    assert result.exit_code == 2
    assert "'my.fn' is not a valid function name" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = dayfly(server, "deploy", str(empty))
    assert result.exit_code == 2
    assert "no files to deploy" in result.stderr


def test_deploy_shows_pip_progress_for_requirements(server, tmp_path):
    folder = write_function(tmp_path / "withdeps")
    whl_name, whl = _wheel("dayfly_clidep", "1.0", "VALUE = 'from the wheel'\n")
    (folder / whl_name).write_bytes(whl)
    (folder / "requirements.txt").write_text(f"./{whl_name}\n")
    (folder / "handler.py").write_text(
        "import dayfly_clidep\n\ndef handler(event, context):\n    return dayfly_clidep.VALUE\n")
    result = deploy(server, folder)
    assert "Successfully installed" in result.stderr, result.stderr
    assert "loading handler.handler" in result.stderr
    out = dayfly(server, "invoke", "withdeps")
    assert json.loads(out.stdout) == "from the wheel"


def _wheel(name: str, version: str, source: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel, so pip runs without a network."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}.py": source.encode(),
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 .encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n"}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


# -- invoke --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo(server, tmp_path_factory) -> str:
    """A deployed function `echo` that returns {"got": event, "tag": "v1"}."""
    deploy(server, write_function(tmp_path_factory.mktemp("fn") / "echo"))
    return "echo"


def test_invoke_prints_the_response(server, echo):
    result = dayfly(server, "invoke", echo, "--payload", '{"a": [1, 2]}')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"got": {"a": [1, 2]}, "tag": "v1"}
    assert result.stderr == ""


def test_invoke_reads_payload_from_file_and_stdin(server, echo, tmp_path):
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    result = dayfly(server, "invoke", echo, "--payload-file", str(event))
    assert json.loads(result.stdout)["got"] == {"from": "file"}
    result = dayfly(server, "invoke", echo, "--payload", "-", input='{"from": "stdin"}')
    assert json.loads(result.stdout)["got"] == {"from": "stdin"}
    result = dayfly(server, "invoke", echo, "--payload-file", "-", input='{"from": "stdin2"}')
    assert json.loads(result.stdout)["got"] == {"from": "stdin2"}
    result = dayfly(server, "invoke", echo)
    assert json.loads(result.stdout)["got"] == {}


def test_invoke_rejects_bad_json_before_any_request(server, tmp_path):
    # an endpoint where nothing listens: the JSON error must come first
    runner = CliRunner()
    result = runner.invoke(cli, ["invoke", "echo", "--payload", "{nope"], catch_exceptions=False,
                           env={"DAYFLY_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert result.exit_code == 2
    assert "--payload" in result.stderr and "not valid JSON" in result.stderr
    assert "cannot reach" not in result.stderr
    result = dayfly(server, "invoke", "echo", "--payload", "{}", "--payload-file", "-")
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_invoke_function_error_goes_to_stderr_with_exit_1(server, echo):
    result = dayfly(server, "invoke", echo, "--payload", '{"fail": "x"}')
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "ValueError: boom: x" in result.stderr
    assert re.search(r'handler\.py", line \d+, in handler', result.stderr), result.stderr


def test_invoke_log_prints_the_tail_to_stderr(server, echo):
    result = dayfly(server, "invoke", echo, "--payload", '{"k": 1}', "--log")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["got"] == {"k": 1}
    rid = RID.search(result.stderr).group(1)
    assert "handling {'k': 1}" in result.stderr
    assert f"END RequestId: {rid}" in result.stderr
    assert f"REPORT RequestId: {rid}" in result.stderr


def test_invoke_async_prints_the_request_id(server, echo):
    result = dayfly(server, "invoke", echo, "--async", "--payload", '{"queued": true}')
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"[0-9a-f-]{36}\n", result.stdout), result.stdout
    # the event is delivered: an invocation triggered by it shows up
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = json.loads(dayfly(server, "invocations", echo, "--json").stdout)["invocations"]
        if any(r["trigger"] == "event" for r in rows):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the queued event was never invoked")
    assert dayfly(server, "invoke", echo, "--async", "--log").exit_code == 2


def test_unknown_function_is_one_line_with_a_hint(server):
    result = dayfly(server, "invoke", "no-such-fn")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: Function not found: arn:aws:lambda:us-east-1:000000000000:function:no-such-fn",
        "hint: `dayfly ls` lists the deployed functions"]


def test_bad_function_name_is_a_usage_error(server):
    result = dayfly(server, "logs", "a/b")
    assert result.exit_code == 2
    assert "'a/b' is not a function name" in result.stderr


def test_unreachable_endpoint(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["ls"], ["invoke", "x"], ["logs", "x"], ["deploy", str(tmp_path)]):
        result = CliRunner().invoke(cli, [*args, "--endpoint", url], catch_exceptions=False)
        if args[0] == "deploy":  # an empty folder is refused first
            assert result.exit_code == 2
            continue
        assert result.exit_code == 1, args
        assert result.stderr.strip().splitlines() == [
            f"Error: cannot reach dayfly at {url} — is `dayfly up` running?",
            "hint: point the CLI at another node with `--endpoint URL` or DAYFLY_ENDPOINT=URL "
            "(`dayfly up --port N` picks the port)"]
    result = CliRunner().invoke(cli, ["ls", "--endpoint", "localhost:8080"])
    assert result.exit_code == 2
    assert "must start with http://" in result.stderr


# -- listings --------------------------------------------------------------------------------


def test_ls_lists_functions_with_warm_instances(server, echo):
    invoke_rid(server, echo)
    result = dayfly(server, "ls")
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "ISOLATION",
                              "MODIFIED", "WARM"]
    row = next(r.split() for r in rows if r.split()[0] == echo)
    assert row[1:5] == ["python3.11", "handler.handler", "256", "MB"]
    assert row[-1] == "1"  # the instance that just served is idle and warm
    data = json.loads(dayfly(server, "ls", "--json").stdout)
    assert echo in [f["FunctionName"] for f in data["Functions"]]


def test_logs_show_start_end_report_of_an_invocation(server, echo):
    rid = invoke_rid(server, echo, '{"log": "me"}')
    result = dayfly(server, "logs", echo, "-n", "5")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    start = lines.index(f"START RequestId: {rid} Version: $LATEST")
    assert lines[start + 1] == "handling {'log': 'me'}"
    assert lines[start + 2] == f"END RequestId: {rid}"
    assert lines[start + 3].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    # -n limits, newest last
    one = dayfly(server, "logs", echo, "-n", "1").stdout
    assert one.count("START RequestId:") == 1 and rid in one
    # --since: nothing started in the last 0.001 seconds
    none = dayfly(server, "logs", echo, "--since", "0.001")
    assert none.stdout == "" and "no invocations" in none.stderr


def test_logs_follow_prints_new_invocations_until_ctrl_c(server, echo):
    invoke_rid(server, echo)
    proc = subprocess.Popen([sys.executable, "-m", "dayfly.cli.main", "logs", echo, "-f",
                             "-n", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "DAYFLY_ENDPOINT": server.url})
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()

    def wait_for(prefix: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if lines.get(timeout=0.5).startswith(prefix):
                    return
            except queue.Empty:
                pass
        pytest.fail(f"`dayfly logs -f` never printed {prefix!r}")

    try:
        wait_for("REPORT RequestId:")  # the recent one: the stream is live now
        rid = invoke_rid(server, echo, '{"follow": 1}')
        wait_for(f"START RequestId: {rid}")
        wait_for(f"REPORT RequestId: {rid}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_invocations_table_and_status_filter(server, echo):
    ok = invoke_rid(server, echo)
    dayfly(server, "invoke", echo, "--payload", '{"fail": 1}')
    result = dayfly(server, "invocations", echo, "-n", "50")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split()[:4] == ["REQUEST", "ID", "START", "VERSION"]
    row = next(line for line in result.stdout.splitlines() if line.startswith(ok))
    assert re.search(r" \$LATEST +success .* \d+\.\d\d ms .* [1-9]\d* MB$", row.rstrip()), row
    errors = json.loads(dayfly(server, "invocations", echo, "--status", "error", "--json")
                        .stdout)["invocations"]
    assert errors and all(r["status"] == "error" for r in errors)
    table = dayfly(server, "invocations", echo, "--status", "error").stdout
    assert ok not in table and "error" in table
    assert dayfly(server, "invocations", echo, "--status", "nope").exit_code == 2


def test_instances_and_scale_to_zero(server, echo):
    invoke_rid(server, echo)
    result = dayfly(server, "instances", echo)
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "PID", "STATE", "VERSION", "INVOCATIONS", "IDLE", "PSS"]
    data = json.loads(dayfly(server, "instances", echo, "--json").stdout)["instances"]
    assert data and rows[0].split()[1] == str(data[0]["pid"])
    assert rows[0].split()[2] in ("idle", "busy") and rows[0].endswith("MiB")
    result = dayfly(server, "scale-to-zero", echo)
    assert result.exit_code == 0
    assert f"stopped {len(data)} instance" in result.stderr
    assert json.loads(dayfly(server, "instances", echo, "--json").stdout)["instances"] == []
    assert "no instances" in dayfly(server, "instances", echo).stderr


# -- versions and aliases --------------------------------------------------------------------


def test_versions_publish_alias_and_qualified_invoke(server, tmp_path):
    folder = write_function(tmp_path / "rel", tag="v1")
    deploy(server, folder)
    first = dayfly(server, "publish", "rel", "--description", "first")
    assert first.exit_code == 0 and first.stdout == "1\n"
    assert "published rel version 1" in first.stderr
    again = dayfly(server, "publish", "rel")
    assert again.stdout == "1\n" and "nothing changed since version 1" in again.stderr

    write_function(folder, tag="v2")
    deploy(server, folder)
    assert dayfly(server, "publish", "rel").stdout == "2\n"

    versions = dayfly(server, "versions", "rel")
    assert [line.split()[0] for line in versions.stdout.splitlines()[1:]] == ["$LATEST", "1", "2"]
    assert versions.stdout.splitlines()[2].rstrip().endswith("first")
    data = json.loads(dayfly(server, "versions", "rel", "--json").stdout)
    assert [v["Version"] for v in data["Versions"]] == ["$LATEST", "1", "2"]

    created = dayfly(server, "alias", "set", "rel", "live", "1", "--description", "prod")
    assert created.exit_code == 0 and "created alias live of rel: version 1" in created.stderr
    assert json.loads(dayfly(server, "invoke", "rel", "--qualifier", "live").stdout)["tag"] == "v1"
    assert json.loads(dayfly(server, "invoke", "rel:live").stdout)["tag"] == "v1"

    updated = dayfly(server, "alias", "set", "rel", "live", "2", "--weight", "1=0.25")
    assert updated.exit_code == 0, updated.output
    assert "updated alias live of rel: version 2, 25% to version 1" in updated.stderr
    listing = dayfly(server, "alias", "ls", "rel").stdout.splitlines()
    assert listing[1].split() == ["live", "2", "1", "(25%)", "prod"]
    aliases = json.loads(dayfly(server, "alias", "ls", "rel", "--json").stdout)["Aliases"]
    assert aliases[0]["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.25}}

    # setting without --weight removes the split
    dayfly(server, "alias", "set", "rel", "live", "2")
    tags = {json.loads(dayfly(server, "invoke", "rel", "-q", "live").stdout)["tag"]
            for _ in range(5)}
    assert tags == {"v2"}
    assert json.loads(dayfly(server, "invoke", "rel", "-q", "1").stdout)["tag"] == "v1"

    bad = dayfly(server, "alias", "set", "rel", "live", "2", "--weight", "1=1.5")
    assert bad.exit_code == 2 and "VERSION=WEIGHT" in bad.stderr
    missing = dayfly(server, "alias", "set", "rel", "beta", "9")
    assert missing.exit_code == 1 and "function:rel:9" in missing.stderr
    assert "`dayfly versions rel`" in missing.stderr

    # a version an alias points at cannot go; after the alias does, it can
    assert dayfly(server, "rm", "rel", "--qualifier", "2", "--yes").exit_code == 1
    assert dayfly(server, "alias", "rm", "rel", "live").exit_code == 0
    assert "has no aliases" in dayfly(server, "alias", "ls", "rel").stderr
    removed = dayfly(server, "rm", "rel", "--qualifier", "2", "--yes")
    assert removed.exit_code == 0 and "deleted version 2 of rel" in removed.stderr
    data = json.loads(dayfly(server, "versions", "rel", "--json").stdout)
    assert [v["Version"] for v in data["Versions"]] == ["$LATEST", "1"]


def test_rm_asks_first(server, tmp_path):
    deploy(server, write_function(tmp_path / "doomed"))
    refused = dayfly(server, "rm", "doomed", input="n\n")
    assert refused.exit_code == 1 and "Delete function doomed" in refused.stderr
    assert dayfly(server, "invoke", "doomed").exit_code == 0
    confirmed = dayfly(server, "rm", "doomed", input="y\n")
    assert confirmed.exit_code == 0 and "deleted function doomed" in confirmed.stderr
    assert "doomed" not in dayfly(server, "ls").stdout
    gone = dayfly(server, "rm", "doomed", "--yes")
    assert gone.exit_code == 1 and "Function not found" in gone.stderr


def _up(data_dir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dayfly.cli.main", "up", "--port", str(port),
                             "--data-dir", str(data_dir), "--isolation", "process"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_up_on_port_0_says_the_port_it_got_and_serves_there(tmp_path):
    import httpx

    proc = _up(tmp_path / "data", 0)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "dayfly up exited"
        port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", line).group(1))
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        # a second platform on the taken port: one clear line, before anything starts
        second = _up(tmp_path / "data2", port)
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in out
        assert "Traceback" not in out
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
