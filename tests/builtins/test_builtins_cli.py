"""`dayfly builtins` and `dayfly deploy builtin:NAME --config ... --trigger`, as a person types
them, against a real `dayfly up`."""

from __future__ import annotations

import io
import json

import pytest
from builtin_helpers import keys, s3_client, wait_for
from click.testing import CliRunner, Result

from dayfly.cli.main import cli


def dayfly(server, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False,
                              env={"DAYFLY_ENDPOINT": server.url, "COLUMNS": "200"})


def test_builtins_lists_each_with_its_options(server):
    out = dayfly(server, "builtins")
    assert out.exit_code == 0, out.output
    for name in ("builtin:image-transform", "builtin:notify", "builtin:compress"):
        assert name in out.stdout
    assert "source_bucket" in out.stdout and "(required)" in out.stdout
    assert "signing_secret" in out.stdout and "max_ratio" in out.stdout
    data = json.loads(dayfly(server, "builtins", "--json").stdout)
    assert [b["name"] for b in data["builtins"]] == ["image-transform", "notify", "compress"]
    one = dayfly(server, "builtins", "builtin:notify")
    assert "builtin:notify" in one.stdout and "builtin:compress" not in one.stdout
    missing = dayfly(server, "builtins", "resize")
    assert missing.exit_code == 1 and "no builtin named 'resize'" in missing.stderr


def test_deploy_a_builtin_wired_to_its_bucket_in_one_command(server, tmp_path):
    pil = pytest.importorskip("PIL.Image")
    s3 = s3_client(server)
    for b in ("clip", "clout"):
        s3.create_bucket(Bucket=b)
    args = ["deploy", "builtin:image-transform", "--name", "cli-thumbs",
            "--config", "source_bucket=clip", "--config", "target_bucket=clout",
            "--config", "width=64", "--config", "source_suffix=.png", "--trigger"]
    out = dayfly(server, *args)
    assert out.exit_code == 0, out.output
    assert "cli-thumbs" in out.stdout and "clip:read, clout:write" in out.stdout
    assert "bucket trigger builtin-cli-thumbs" in out.stderr
    again = dayfly(server, *args)  # a redeploy replaces the wiring instead of failing
    assert again.exit_code == 0, again.output
    buf = io.BytesIO()
    pil.new("RGB", (640, 320), "orange").save(buf, "PNG")
    s3.put_object(Bucket="clip", Key="sun.png", Body=buf.getvalue())
    # a target bucket of its own gets no thumbs/ folder (it became clout/thumbs/sun-...)
    assert wait_for(lambda: keys(s3, "clout")) == ["sun-64x32.webp"]


def test_config_file_and_clear_errors(server, tmp_path):
    cfg = tmp_path / "notify.toml"
    cfg.write_text('template = "${event}"\n[[targets]]\ntype = "webhook"\n'
                   'url = "http://127.0.0.1:9/hook"\nformat = "cloudevents"\n')
    out = dayfly(server, "deploy", "builtin:notify", "--name", "cli-notify", "--config-file",
                 str(cfg), "--config", "retries=1")
    assert out.exit_code == 0, out.output
    assert "127.0.0.1:9" in out.stdout  # the network row: exactly its destination
    bad = dayfly(server, "deploy", "builtin:notify", "--config", "webhook=ftp://x")
    assert bad.exit_code == 1
    assert "Error: builtin:notify: targets[0] (webhook): option 'url' must be an http://" \
        in bad.stderr
    nowhere = dayfly(server, "deploy", "builtin:notify", "--config", "webhook=http://x.example/",
                     "--trigger")
    assert nowhere.exit_code == 1 and "has no bucket source to wire" in nowhere.stderr
    folder = dayfly(server, "deploy", str(tmp_path), "--config", "a=1")
    assert folder.exit_code == 2 and "are for builtin:NAME" in folder.stderr


def test_a_refused_trigger_stores_nothing(server):
    s3_client(server).create_bucket(Bucket="halfout")
    out = dayfly(server, "deploy", "builtin:image-transform", "--name", "half-made",
                 "--config", "source_bucket=nosuch", "--config", "target_bucket=halfout",
                 "--trigger")
    assert out.exit_code == 1 and "No bucket nosuch" in out.stderr, out.output
    nowhere = dayfly(server, "deploy", "builtin:notify", "--name", "half-notify",
                     "--config", "webhook=http://x.example/", "--trigger")
    assert nowhere.exit_code == 1 and "has no bucket source to wire" in nowhere.stderr
    names = {f["FunctionName"] for f in json.loads(dayfly(server, "ls", "--json").stdout)["Functions"]}
    assert "half-made" not in names and "half-notify" not in names, names
