"""`dayfly trigger add/ls/rm` against a real `dayfly up`: tables and schedules."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result
from conftest import ALLOW_WEAK
from trigger_helpers import deploy, records, scratch_db, unique, wait_for

from dayfly.cli.main import cli

SERVER_ARGS = ALLOW_WEAK  # trigger_helpers' recorder writes a host file: process tier
SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts


def dayfly(server, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False,
                              env={"DAYFLY_ENDPOINT": server.url, "COLUMNS": "200"})


def test_add_list_and_remove_table_and_schedule_triggers(server, tmp_path):
    fn, out = unique("cli"), tmp_path / "cli.jsonl"
    deploy(server, fn, out)
    with scratch_db("sqlite", tmp_path) as db:
        t = db.create("orders")
        before = db.snapshot()
        r = dayfly(server, "trigger", "add", fn, "--table", db.url(t), "--view", "NEW_IMAGE",
                   "--batch-size", "5", "--json")
        assert r.exit_code == 0, r.output
        mapping = json.loads(r.stdout)
        assert mapping["Dayfly"]["StreamViewType"] == "NEW_IMAGE" and mapping["BatchSize"] == 5
        db.sql(f"INSERT INTO {t} (id, name) VALUES (1, 'x')")
        assert wait_for(lambda: records(out), 20)
        assert "OldImage" not in records(out)[0]["dynamodb"]

        r = dayfly(server, "trigger", "add", fn, "--cron", "*/5 * * * *", "--tz", "Europe/Paris",
                   "--name", f"{fn}-cron")
        assert r.exit_code == 0 and f"{fn}-cron" in r.output, r.output
        r = dayfly(server, "trigger", "add", fn, "--rate", "1 minute", "--missed", "catch-up")
        assert r.exit_code == 0 and "rate(1 minute)" in r.output, r.output

        r = dayfly(server, "trigger", "ls", fn)
        assert r.exit_code == 0, r.output
        assert mapping["UUID"] in r.output and "table" in r.output and "healthy" in r.output
        assert "*/5 * * * * (Europe/Paris, missed: skip)" in r.output
        assert "rate(1 minute) (UTC, missed: catch-up)" in r.output
        listed = json.loads(dayfly(server, "trigger", "ls", fn, "--json").stdout)
        assert len(listed["EventSourceMappings"]) == 1 and len(listed["Schedules"]) == 2

        r = dayfly(server, "trigger", "rm", mapping["UUID"])
        assert r.exit_code == 0 and "capture removed" in r.output, r.output
        assert db.snapshot() == before
        for s in listed["Schedules"]:
            assert dayfly(server, "trigger", "rm", s["Id"]).exit_code == 0
        r = dayfly(server, "trigger", "ls", fn)
        assert "no triggers" in r.output


def test_bad_trigger_input_is_explained(server, tmp_path):
    fn = unique("clibad")
    deploy(server, fn, tmp_path / "bad.jsonl")
    r = dayfly(server, "trigger", "add", fn)
    assert r.exit_code == 2 and "exactly one of --table, --cron or --rate" in r.output
    r = dayfly(server, "trigger", "add", fn, "--cron", "* * *")
    assert r.exit_code == 1 and "needs 5 fields" in r.output, r.output
    r = dayfly(server, "trigger", "add", fn, "--table", "sqlite:///nonexistent/x.db#t")
    assert r.exit_code == 1 and "no SQLite database at /nonexistent/x.db" in r.output, r.output
    r = dayfly(server, "trigger", "add", fn, "--table", "sqlite:///x.db")
    assert r.exit_code == 1 and "hint:" in r.output and "#table" in r.output, r.output
    r = dayfly(server, "trigger", "rm", "not-a-trigger")
    assert r.exit_code == 1 and "no trigger not-a-trigger" in r.output
