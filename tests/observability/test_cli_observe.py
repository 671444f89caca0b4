"""`dayfly top`, `dayfly completion`, `logs --json` and `ls` (one stats request for warm counts)."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner
from obs_helpers import deploy, invoke

from dayfly.cli.main import cli


def run(server, *args: str):
    env = {"DAYFLY_ENDPOINT": server.url, "DAYFLY_TOKEN": "", "DAYFLY_DATA_DIR": "/nonexistent"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_top_once_and_json(server):
    deploy(server.url, "topped")
    for _ in range(3):
        assert invoke(server.url, "topped").status_code == 200
    res = run(server, "top", "--once")
    assert res.exit_code == 0, res.output
    assert "dayfly top" in res.output and "topped" in res.output and "INV/MIN" in res.output
    res = run(server, "top", "--json")
    data = json.loads(res.stdout)
    assert data["functions"]["topped"]["invocations"] >= 3
    assert data["functions"]["topped"]["instances"]["idle"] >= 1


def test_top_into_a_pipe_prints_one_frame_and_exits(server):
    deploy(server.url, "piped")
    assert invoke(server.url, "piped").status_code == 200
    env = {"DAYFLY_ENDPOINT": server.url, "DAYFLY_TOKEN": "", "DAYFLY_DATA_DIR": "/nonexistent",
           "PATH": "/usr/bin:/bin"}
    # stdout is a pipe, not a terminal: a live view would never end (the timeout fails it)
    res = subprocess.run([sys.executable, "-m", "dayfly.cli.main", "top"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("dayfly top") == 1 and "piped" in res.stdout
    assert "not a terminal" in res.stderr


def test_ls_shows_warm_instances(server):
    deploy(server.url, "warmish")
    invoke(server.url, "warmish")
    res = run(server, "ls")
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("warmish"))
    assert line.split()[-1] == "1"


def test_logs_json_prints_records(server):
    deploy(server.url, "logged")
    rid = invoke(server.url, "logged", {"hello": 1}).headers["x-amzn-requestid"]
    res = run(server, "logs", "logged", "--json")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert any(r["request_id"] == rid and "hello" in r["text"] for r in records)


def test_completion_scripts(server):
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "#compdef dayfly"),
                          ("fish", "complete --no-files --command dayfly")):
        res = CliRunner().invoke(cli, ["completion", shell], catch_exceptions=False)
        assert res.exit_code == 0 and marker in res.stdout, (shell, res.stdout[:300])
    res = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_user_mistakes_get_a_hint_not_a_traceback(server):
    res = run(server, "top", "--window", "5")
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = run(server, "token", "revoke", "nope", "--yes")
    assert res.exit_code == 1 and "dayfly token ls" in res.output
