"""Cluster settings and start-up: flags over environment over the config file's [cluster]
table, the cluster key's forms, one clear line (exit 1, no traceback) when a setting is missing
or PostgreSQL/NATS cannot be reached, and a single node listing itself as the only node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from nats_helpers import NATS_URL, require_nats
from pg_helpers import ADMIN_DSN, require

from dayfly.cluster.settings import ClusterError, ClusterSettings, load_config, resolve

KEY = "ab" * 32


def settings(flags=None, config=None, env=None) -> ClusterSettings:
    return resolve(flags or {}, config or {}, host="127.0.0.1", port=8080,
                   env={"DAYFLY_CLUSTER_KEY": KEY, **(env or {})})


def test_flags_win_over_the_environment_which_wins_over_the_config_file(tmp_path):
    conf = tmp_path / "dayfly.toml"
    conf.write_text('[cluster]\ndatabase = "postgresql://file/db"\nnats = "nats://file:4222"\n'
                    'name = "fromfile"\nnode_id = "n-file"\n')
    config = load_config(conf)
    s = settings(config=config)
    assert (s.database, s.nats, s.name, s.node_id) == ("postgresql://file/db",
                                                       "nats://file:4222", "fromfile", "n-file")
    s = settings(config=config, env={"DAYFLY_DATABASE": "postgresql://env/db",
                                     "DAYFLY_CLUSTER_NAME": "fromenv"})
    assert (s.database, s.name) == ("postgresql://env/db", "fromenv")
    s = settings({"database": "postgresql://flag/db", "name": "fromflag"}, config,
                 {"DAYFLY_DATABASE": "postgresql://env/db"})
    assert (s.database, s.name, s.nats) == ("postgresql://flag/db", "fromflag",
                                            "nats://file:4222")
    assert s.advertise == "http://127.0.0.1:8080" and s.key == bytes.fromhex(KEY)


def test_the_key_comes_from_a_file_in_hex_or_base64_and_derived_keys_differ(tmp_path):
    import base64

    hexfile, b64file = tmp_path / "k.hex", tmp_path / "k.b64"
    hexfile.write_text(KEY + "\n")
    b64file.write_text(base64.b64encode(bytes.fromhex(KEY)).decode())
    flags = {"database": "postgresql://x/y", "nats": "nats://x"}
    for f in (hexfile, b64file):
        s = resolve({**flags, "key_file": str(f)}, {}, host="::", port=1, env={})
        assert s.key == bytes.fromhex(KEY)
    assert len({s.derive("secrets"), s.derive("function keys"), s.derive("node-to-node"),
                s.key}) == 4


@pytest.mark.parametrize(("flags", "env", "says"), [
    ({}, {"DAYFLY_CLUSTER_KEY": KEY}, "needs --database"),
    ({"database": "postgresql://x/y"}, {"DAYFLY_CLUSTER_KEY": KEY}, "needs --nats"),
    ({"database": "postgresql://x/y", "nats": "nats://x"}, {}, "needs the cluster key"),
    ({"database": "postgresql://x/y", "nats": "nats://x"}, {"DAYFLY_CLUSTER_KEY": "abcd"},
     "must be 32 random bytes"),
    ({"database": "postgresql://x/y", "nats": "nats://x", "name": "bad name!"},
     {"DAYFLY_CLUSTER_KEY": KEY}, "cluster name"),
    ({"database": "postgresql://x/y", "nats": "nats://x", "key_file": "/nonexistent/k"}, {},
     "cannot read the cluster key file"),
    ({"database": "postgresql://x/y", "nats": "nats://x", "advertise": "ftp://x"},
     {"DAYFLY_CLUSTER_KEY": KEY}, "--advertise"),
])
def test_a_missing_or_wrong_setting_is_one_clear_error(flags, env, says):
    with pytest.raises(ClusterError) as exc:
        resolve(flags, {}, host="127.0.0.1", port=1, env=env)
    assert says in exc.value.message and "\n" not in exc.value.message


def test_a_config_file_that_is_not_toml_or_has_unknown_keys_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster\n")
    with pytest.raises(ClusterError, match="not valid TOML"):
        load_config(bad)
    bad.write_text('[cluster]\ndatabse = "x"\n')
    with pytest.raises(ClusterError, match="unknown \\[cluster\\] setting"):
        load_config(bad)


def up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYFLY_")}
    return subprocess.run([sys.executable, "-m", "dayfly.cli.main", "up", "--port", "0",
                           "--data-dir", str(tmp_path / "data"), *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("unreachable", ["postgresql", "nats"])
def test_up_says_in_one_line_which_service_it_cannot_reach(tmp_path, unreachable):
    require()
    require_nats()
    key = tmp_path / "k"
    key.write_text(KEY)
    dsn = "postgresql://postgres@127.0.0.1:1/x" if unreachable == "postgresql" else ADMIN_DSN
    nats = "nats://127.0.0.1:1" if unreachable == "nats" else NATS_URL
    out = up(tmp_path, "--cluster", "--database", dsn, "--nats", nats, "--cluster-key-file",
             str(key))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("Error: cannot reach " + ("PostgreSQL" if unreachable ==
                                                         "postgresql" else "NATS")), lines


def test_up_with_a_config_file_missing_its_key_is_one_line(tmp_path):
    conf = tmp_path / "dayfly.toml"
    conf.write_text(f'[cluster]\ndatabase = "{ADMIN_DSN}"\nnats = "{NATS_URL}"\n')
    out = up(tmp_path, "--config", str(conf))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "needs the cluster key" in out.stderr


def test_a_single_node_lists_itself(server):
    r = httpx.get(f"{server.url}/dayfly/v1/nodes")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["cluster"] is None and len(data["nodes"]) == 1
    me = data["nodes"][0]
    assert me["self"] and me["address"] == server.url and me["tiers"]
