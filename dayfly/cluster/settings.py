"""What a cluster node is told: where PostgreSQL and NATS are, its cluster's name and key, and
how other nodes reach it. Read from flags, then the environment, then a config file's
`[cluster]` table (first found wins); every mistake is one clear ClusterError line."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PlatformError

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # NATS stream/bucket names are built from it
KEY_BYTES = 32
# where each setting comes from: (flag, environment variable, config file key)
SOURCES = {"database": ("--database", "DAYFLY_DATABASE", "database"),
           "nats": ("--nats", "DAYFLY_NATS", "nats"),
           "name": ("--cluster-name", "DAYFLY_CLUSTER_NAME", "name"),
           "node_id": ("--node-id", "DAYFLY_NODE_ID", "node_id"),
           "advertise": ("--advertise", "DAYFLY_ADVERTISE", "advertise"),
           "key_file": ("--cluster-key-file", "DAYFLY_CLUSTER_KEY_FILE", "key_file"),
           "ack_wait": ("--ack-wait", "DAYFLY_ACK_WAIT", "ack_wait")}
ACK_WAIT_S = (1.0, 3600.0)  # bounds of --ack-wait


class ClusterError(PlatformError):
    """Cluster mode cannot start: a setting is missing or wrong, or a service is unreachable."""


@dataclass(slots=True)
class ClusterSettings:
    """One node's view of its cluster."""

    database: str  # PostgreSQL DSN
    nats: str  # NATS URL(s), comma-separated
    key: bytes = field(repr=False)  # the cluster key: seals secrets, derives function keys
    name: str = "dayfly"  # prefixes every NATS stream, KV bucket and object store name
    node_id: str = ""
    advertise: str = ""  # the URL other nodes reach this node's gateway at
    # how long an event a node took stays its own without a heartbeat: a dead node's events
    # go to another node after this (the same on every node: the consumer is shared)
    ack_wait_s: float = 30.0

    @property
    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.nats.split(",") if u.strip()]

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one use (sealing secrets, function keys, node calls), so no two
        uses share key material."""
        return hmac.digest(self.key, b"dayfly cluster key\0" + purpose.encode(), "sha256")


def load_config(path: Path) -> dict[str, Any]:
    """A dayfly config file (TOML); its `[cluster]` table is what cluster mode reads."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ClusterError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClusterError(f"config file {path} is not valid TOML: {exc}") from None
    table = data.get("cluster", {})
    if not isinstance(table, dict):
        raise ClusterError(f"config file {path}: [cluster] must be a table")
    unknown = sorted(set(table) - {s[2] for s in SOURCES.values()} - {"key"})
    if unknown:
        raise ClusterError(f"config file {path}: unknown [cluster] setting(s): "
                           f"{', '.join(unknown)}")
    return data


def resolve(flags: Mapping[str, str | None], config: Mapping[str, Any], *, host: str, port: int,
            env: Mapping[str, str] | None = None) -> ClusterSettings:
    """Settings from flags (by field name), the environment and the config's [cluster] table."""
    env = os.environ if env is None else env
    table = config.get("cluster", {})

    def pick(name: str) -> str | None:
        _flag, var, key = SOURCES[name]
        for value in (flags.get(name), env.get(var), table.get(key)):
            if value not in (None, ""):
                if not isinstance(value, str):
                    raise ClusterError(f"[cluster] {key} must be a string")
                return value
        return None

    database, nats = pick("database"), pick("nats")
    for what, value in (("database", database), ("nats", nats)):
        if value is None:
            flag, var, key = SOURCES[what]
            raise ClusterError(f"cluster mode needs {flag} (or ${var}, or `{key}` in the config "
                               "file's [cluster] table)")
    name = pick("name") or "dayfly"
    if not NAME_RE.match(name):
        raise ClusterError(f"cluster name {name!r} must be 1-64 letters, digits, '-' or '_' "
                           "(it names NATS streams and buckets)")
    shown = {"": "127.0.0.1", "0.0.0.0": socket.gethostname(), "::": socket.gethostname()}
    address = shown.get(host, host)
    address = f"[{address}]" if ":" in address else address
    node_id = pick("node_id") or f"{socket.gethostname()}-{port}"
    if not re.match(r"^[A-Za-z0-9_.-]{1,128}$", node_id):
        raise ClusterError(f"node id {node_id!r} must be 1-128 letters, digits, '.', '-' or '_'")
    advertise = (pick("advertise") or f"http://{address}:{port}").rstrip("/")
    if not re.match(r"^https?://[^/\s]+$", advertise):
        raise ClusterError(f"--advertise {advertise!r} must be a URL like http://host:port")
    assert database is not None and nats is not None
    return ClusterSettings(database=database, nats=nats, key=_key(pick("key_file"), env, table),
                           name=name, node_id=node_id, advertise=advertise,
                           ack_wait_s=_ack_wait(flags.get("ack_wait"), env, table))


def _ack_wait(flag: str | None, env: Mapping[str, str], table: Mapping[str, Any]) -> float:
    """Seconds a delivery stays with a node without its heartbeat (default 30)."""
    for value in (flag, env.get(SOURCES["ack_wait"][1]), table.get("ack_wait")):
        if value in (None, ""):
            continue
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            seconds = -1.0
        low, high = ACK_WAIT_S
        if not low <= seconds <= high:
            raise ClusterError(f"ack wait {value!r} must be {low:g} to {high:g} seconds")
        return seconds
    return 30.0


def _key(key_file: str | None, env: Mapping[str, str], table: Mapping[str, Any]) -> bytes:
    """The cluster key: a file (hex or base64 of 32 bytes), or hex in $DAYFLY_CLUSTER_KEY."""
    if key_file:
        path = Path(key_file).expanduser()
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ClusterError(f"cannot read the cluster key file {path}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        where = str(path)
    else:
        text = env.get("DAYFLY_CLUSTER_KEY") or table.get("key") or ""
        where = "$DAYFLY_CLUSTER_KEY"
        if not text:
            raise ClusterError("cluster mode needs the cluster key, the same on every node: "
                               "--cluster-key-file FILE (or $DAYFLY_CLUSTER_KEY_FILE, or "
                               "$DAYFLY_CLUSTER_KEY in hex); make one with "
                               "`openssl rand -hex 32 > cluster.key`")
    key = _decode(str(text).strip())
    if key is None:
        raise ClusterError(f"the cluster key in {where} must be {KEY_BYTES} random bytes, "
                           f"written as {2 * KEY_BYTES} hex digits (or base64)")
    return key


def _decode(text: str) -> bytes | None:
    for decode in (bytes.fromhex, lambda t: base64.b64decode(t, validate=True)):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == KEY_BYTES:
            return key
    return None


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key (shown, compared; never the key)."""
    return hashlib.sha256(b"dayfly cluster key id\0" + key).hexdigest()[:16]
