"""`dayfly upload` / `dayfly download`: bulk copies through the object store, byte for byte."""

from __future__ import annotations

import httpx
from click.testing import CliRunner

from dayfly.cli.main import cli

SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts


def test_upload_then_download_a_folder(server, tmp_path):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    files = {"one.txt": b"1" * 10, "a/two.bin": bytes(range(256)) * 40, "a/b/three": b""}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    assert httpx.post(f"{server.url}/dayfly/v1/buckets", json={"name": "bulk-copy"}).status_code == 201
    runner = CliRunner()
    up = runner.invoke(cli, ["upload", "bulk-copy", str(src), "--prefix", "in/",
                             "--endpoint", server.url])
    assert up.exit_code == 0, up.output
    listed = httpx.get(f"{server.url}/dayfly/v1/buckets/bulk-copy/objects").json()["objects"]
    assert sorted(o["key"] for o in listed) == sorted(f"in/{k}" for k in files)
    dest = tmp_path / "dest"
    down = runner.invoke(cli, ["download", "bulk-copy", str(dest), "--prefix", "in/",
                               "--endpoint", server.url])
    assert down.exit_code == 0, down.output
    for rel, data in files.items():
        assert (dest / "in" / rel).read_bytes() == data


def test_upload_of_a_missing_path_is_a_usage_error(server, tmp_path):
    r = CliRunner().invoke(cli, ["upload", "nope", str(tmp_path / "missing"),
                                 "--endpoint", server.url])
    assert r.exit_code == 2 and "does not exist" in r.output
