"""Secrets at rest: sealed in dayfly.db, the data dir its owner's only, a lost key said plainly.

Each test runs a real `dayfly up`, sets secrets over the API, has a function read them, and
then looks at the bytes on disk, or at the data dir as another user (nobody) would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import make_zip, start_server, stop_server
from test_rootless import UNPRIVILEGED, _can_run

# answers digests: a value the function returned would be in its invocation record (on disk)
READER = """
import hashlib, os
def handler(event, context):
    return {k: os.environ.get(k) and hashlib.sha256(os.environ[k].encode()).hexdigest()
            for k in event["keys"]}
"""

# the secrets table as dayfly 0.1.0 created it (values in plain text)
OLD_SECRETS = "CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated REAL NOT NULL)"


def canary(tag: str) -> str:
    return f"canary-{tag}-{uuid.uuid4().hex}"


def set_secret(server, name: str, value: str) -> None:
    r = httpx.put(f"{server.url}/dayfly/v1/secrets/{name}", json={"value": value})
    assert r.status_code < 300, r.text


def deploy_reader(server, name: str, secrets: list[str], isolation: str | None = None) -> None:
    manifest = f"secrets = {json.dumps(secrets)}\n"
    if isolation:
        manifest += f"isolation = {json.dumps(isolation)}\n"
    server.lambda_client().create_function(
        FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::000000000000:role/x",
        Handler="handler.handler",
        Code={"ZipFile": make_zip({"handler.py": READER, "dayfly.toml": manifest})})


def read_env(server, name: str, keys: list[str]) -> dict:
    """What the function sees of these variables (as digests)."""
    resp = server.lambda_client().invoke(FunctionName=name, Payload=json.dumps({"keys": keys}))
    assert "FunctionError" not in resp, resp
    return json.loads(resp["Payload"].read())


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def db_bytes(data_dir: Path) -> bytes:
    """Every byte of the database, its WAL and its shared memory, as they are on disk now."""
    files = [data_dir / f"dayfly.db{suffix}" for suffix in ("", "-wal", "-shm")]
    return b"".join(p.read_bytes() for p in files if p.exists())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def up_fails(data_dir: Path) -> str:
    """Start `dayfly up` on a data dir it must refuse; return what it printed."""
    out = subprocess.run([sys.executable, "-m", "dayfly.cli.main", "up", "--port", "0",
                          "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    return text


def test_secret_values_are_sealed_on_disk_and_still_reach_functions(tmp_path):
    value, other = canary("set"), canary("rotated")
    server = start_server(tmp_path / "data")
    try:
        set_secret(server, "DB_PASSWORD", value)
        deploy_reader(server, "reads-secret", ["DB_PASSWORD"])
        assert read_env(server, "reads-secret", ["DB_PASSWORD"]) == {"DB_PASSWORD": digest(value)}
        # the running node's files, WAL included, hold no plain text of it
        assert value.encode() not in db_bytes(server.data_dir)
        set_secret(server, "DB_PASSWORD", other)
        assert read_env(server, "reads-secret", ["DB_PASSWORD"]) == {"DB_PASSWORD": digest(other)}
        assert other.encode() not in db_bytes(server.data_dir)
    finally:
        stop_server(server)
    raw = db_bytes(server.data_dir)
    assert value.encode() not in raw and other.encode() not in raw
    # and after a restart the sealed value opens again
    server = start_server(tmp_path / "data")
    try:
        assert read_env(server, "reads-secret", ["DB_PASSWORD"]) == {"DB_PASSWORD": digest(other)}
    finally:
        stop_server(server)


def jailed_tiers() -> list[str]:
    from dayfly.platform import tier_report

    return [t["name"] for t in tier_report() if t["available"] and not t["weak"]]


@pytest.mark.parametrize("umask", ["022", "077"])
def test_sandboxes_of_every_tier_still_read_their_code_under_a_closed_data_dir(tmp_path, umask):
    """Instances run as other uids (linux: one per slot; gvisor: 1000 behind its gofer) and
    must still reach the runtime, their code and their secrets in a 0700 data dir, whatever
    umask the operator started dayfly with (dependencies: tests/e2e/test_deps.py)."""
    value = canary("tiers")
    server = start_server(tmp_path / "data", prefix=("sh", "-c", f'umask {umask}; exec "$0" "$@"'))
    try:
        set_secret(server, "SHARED", value)
        for tier in jailed_tiers():
            deploy_reader(server, f"reads-{tier}", ["SHARED"], isolation=tier)
            assert read_env(server, f"reads-{tier}", ["SHARED"]) == {"SHARED": digest(value)}
    finally:
        stop_server(server)


def test_data_dir_and_its_files_are_the_owners_only(tmp_path):
    server = start_server(tmp_path / "data")
    try:
        set_secret(server, "TOKEN", canary("modes"))
        deploy_reader(server, "reads-token", ["TOKEN"])  # a bundle, code, a zygote's files
        assert read_env(server, "reads-token", ["TOKEN"])["TOKEN"]
        data = server.data_dir
        assert mode(data) == 0o700
        for name in ("dayfly.db", "dayfly.db-wal", "dayfly.db-shm", "secrets.key", "master.key",
                     "credentials"):
            assert mode(data / name) == 0o600, name
        # beyond the trees sandboxes read (through bind mounts), no file is for others
        # (the interpreters, the runtime boto3 and merged layers included: instances read
        # them under their own uids)
        shared = {"runtime", "code", "deps", "gvisor", "roots", "lang", "sdk", "opt"}
        for path in data.rglob("*"):
            top = path.relative_to(data).parts[0]
            if path.is_file() and top not in shared and not top.startswith("lang-"):
                assert mode(path) & 0o077 == 0, (path, oct(mode(path)))
    finally:
        stop_server(server)


@pytest.fixture
def open_parent():
    """A directory everyone may enter (pytest's base temp dir is 0700), so that only the data
    dir's own modes stand between nobody and it."""
    parent = Path(tempfile.mkdtemp(prefix="dayfly-at-rest-"))
    os.chmod(parent, 0o755)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.skipif(_can_run() is not None, reason=str(_can_run()))
def test_nobody_can_read_the_data_dir_the_database_or_the_key(open_parent):
    value = canary("nobody")
    server = start_server(open_parent / "data")
    try:
        set_secret(server, "API_KEY", value)
        deploy_reader(server, "reads-as-root", ["API_KEY"])
    finally:
        stop_server(server)
    data = server.data_dir
    probe = """
import os, sys
data = sys.argv[1]
for what, attempt in (("list", lambda: os.listdir(data)),
                      ("db", lambda: open(os.path.join(data, "dayfly.db"), "rb").read()),
                      ("wal", lambda: open(os.path.join(data, "dayfly.db-wal"), "rb").read()),
                      ("key", lambda: open(os.path.join(data, "secrets.key"), "rb").read()),
                      ("code", lambda: os.listdir(os.path.join(data, "code")))):
    try:
        attempt()
        print(what, "read")
    except FileNotFoundError:
        print(what, "absent")
    except PermissionError:
        print(what, "refused")
"""

    def as_nobody() -> dict[str, str]:
        out = subprocess.run([*UNPRIVILEGED, sys.executable, "-c", probe, str(data)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return dict(line.split() for line in out.stdout.splitlines())

    everything = {"list", "db", "wal", "key", "code"}
    assert as_nobody() == {k: "refused" for k in everything}
    # the files are closed on their own too, should the directory ever be opened
    os.chmod(data, 0o755)
    try:
        seen = as_nobody()
    finally:
        os.chmod(data, 0o700)
    assert seen["list"] == "read"
    assert seen["db"] == seen["key"] == "refused", seen
    assert seen["wal"] in ("refused", "absent"), seen


def test_plain_text_secrets_of_an_older_data_dir_are_sealed_at_start(tmp_path):
    value, deleted = canary("old"), canary("deleted")
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o755)
    # an older dayfly's database, as kill -9 left it: rows in the file and in its WAL, and
    # one secret deleted before the upgrade (its bytes linger in a free cell)
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(OLD_SECRETS)
    conn.execute("INSERT INTO secrets VALUES ('GONE', ?, 1.0)", (deleted,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("DELETE FROM secrets WHERE name = 'GONE'")
    conn.execute("INSERT INTO secrets VALUES ('LEGACY', ?, 1.0)", (value,))
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{old}{suffix}", data / f"dayfly.db{suffix}")
        os.chmod(data / f"dayfly.db{suffix}", 0o644)
    conn.close()
    raw = db_bytes(data)
    assert value.encode() in raw and deleted.encode() in raw
    server = start_server(data)
    try:
        raw = db_bytes(data)  # sealed in place, old bytes gone from the file and the WAL
        assert value.encode() not in raw and deleted.encode() not in raw
        assert mode(data) == 0o700 and mode(data / "dayfly.db") == 0o600
        deploy_reader(server, "reads-legacy", ["LEGACY"])
        assert read_env(server, "reads-legacy", ["LEGACY", "GONE"]) == {
            "LEGACY": digest(value), "GONE": None}
    finally:
        stop_server(server)
    raw = db_bytes(data)
    assert value.encode() not in raw and deleted.encode() not in raw


def test_a_lost_or_foreign_key_or_swapped_rows_stop_the_node_with_a_clear_error(tmp_path):
    data = tmp_path / "data"
    server = start_server(data)
    try:
        set_secret(server, "FIRST", canary("first"))
        set_secret(server, "SECOND", canary("second"))
    finally:
        stop_server(server)
    key = data / "secrets.key"
    # the database copied without its key
    key.rename(tmp_path / "kept.key")
    said = up_fails(data)
    assert "secrets.key" in said and "missing" in said, said
    assert not key.exists()  # no new key was made in its place
    # ... or next to another data dir's key
    other = tmp_path / "other"
    stop_server(start_server(other))
    (other / "secrets.key").rename(key)
    said = up_fails(data)
    assert "another secrets key" in said, said
    # the right key, but one secret's sealed value moved into another's row
    (tmp_path / "kept.key").rename(key)
    conn = sqlite3.connect(data / "dayfly.db")
    first = conn.execute("SELECT sealed FROM secrets WHERE name = 'FIRST'").fetchone()[0]
    with conn:
        conn.execute("UPDATE secrets SET sealed = ? WHERE name = 'SECOND'", (first,))
    conn.close()
    said = up_fails(data)
    assert "'SECOND'" in said and "moved from another secret's row" in said, said
