"""Per-function S3 credentials, derived rather than stored.

A function version that declares `buckets` gets key id `DFN` + a hash of its name and version,
and secret HMAC(master secret, key id). Only the master secret is kept, in
`<data dir>/master.key` (0600). The scope is read from the function's configuration when a
request arrives, so a changed `buckets` list or a deleted function takes effect at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidParameter
from ..modes import create_private_once
from ..stores.objects import check_bucket_name
from ..stores.s3errors import S3Error

PREFIX = "DFN"
MODES = ("read", "write", "readwrite")


@dataclass(frozen=True, slots=True)
class Scope:
    """What one function's key may touch: bucket → read, write or readwrite."""

    function: str
    version: str
    buckets: dict[str, str]

    def allows(self, bucket: str, need: str) -> bool:
        """`need` is read or write."""
        return need in self.buckets.get(bucket, "").replace("readwrite", "read write").split()


def validate_buckets(value: object, where: str = "buckets") -> list[str]:
    """`["photos:read", "thumbs:write"]` → sorted `bucket:mode`, one entry per bucket."""
    if not isinstance(value, list) or len(value) > 64:
        raise InvalidParameter(f"{where} must be a list of \"bucket:mode\" (at most 64)")
    modes: dict[str, set[str]] = {}
    for entry in value:
        bucket, _, mode = entry.rpartition(":") if isinstance(entry, str) else ("", "", "")
        if mode not in MODES:
            raise InvalidParameter(f"{where}: {entry!r} must be \"bucket:mode\" with mode one "
                                   f"of {', '.join(MODES)}")
        try:
            check_bucket_name(bucket)
        except S3Error:
            raise InvalidParameter(f"{where}: {bucket!r} is not a valid bucket name") from None
        modes.setdefault(bucket, set()).update(mode.replace("readwrite", "read write").split())
    return sorted(f"{b}:{'readwrite' if len(m) == 2 else m.pop()}" for b, m in modes.items())


def _master(data_dir: Path) -> bytes:
    """The node's master secret: written once to a temp file (0600) and linked into place, so
    it is never seen half-written and two starts cannot both create it."""
    path = data_dir / "master.key"
    if not path.exists():
        create_private_once(path, base64.b64encode(secrets.token_bytes(32)))
    key = base64.b64decode(path.read_bytes())
    if len(key) < 32:
        raise RuntimeError(f"{path} is damaged: it must hold 32 random bytes (base64)")
    return key


class FunctionKeys:
    """Derives credentials and resolves key ids back to a function's current scope."""

    def __init__(self, data_dir: Path, buckets_of: Callable[[str, str], list[str] | None],
                 master: bytes | None = None) -> None:
        # a cluster passes `master` (derived from the cluster key): every node derives alike
        self._master = master if master is not None else _master(data_dir)
        self._buckets_of = buckets_of  # (name, version) → declared buckets, None if gone
        self._ids: dict[str, tuple[str, str]] = {}  # key id → (name, version)

    def credentials(self, name: str, version: str) -> tuple[str, str]:
        """(key id, secret) of a function version; remembers the id for lookups."""
        digest = hashlib.sha256(f"{name}\0{version}".encode()).digest()
        key_id = PREFIX + base64.b32encode(digest).decode()[:17]
        self._ids[key_id] = (name, version)
        return key_id, self._secret(key_id)

    def _secret(self, key_id: str) -> str:
        mac = hmac.digest(self._master, key_id.encode(), "sha256")
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def scope(self, key_id: str) -> Scope | None:
        """The scope of a function's key; None for other keys and for functions now gone."""
        if not key_id.startswith(PREFIX):
            return None
        owner = self._ids.get(key_id)
        buckets = self._buckets_of(*owner) if owner else None
        if owner is None or not buckets:
            return None
        return Scope(owner[0], owner[1], dict(b.rsplit(":", 1) for b in buckets))

    def derive(self, label: bytes) -> bytes:
        """A key for another purpose (SSE-S3's), derived from the same master: every node of a
        cluster derives the same one."""
        return hmac.digest(self._master, b"derive:" + label, "sha256")

    def secret(self, key_id: str) -> str | None:
        """The secret, if `key_id` is a live function key (the KeyStore's fallback)."""
        return self._secret(key_id) if self.scope(key_id) is not None else None

    def function_of(self, key_id: str) -> str | None:
        owner = self._ids.get(key_id) if key_id.startswith(PREFIX) else None
        return owner[0] if owner else None

    def env(self, name: str, version: str, endpoint: str, region: str) -> dict[str, str]:
        """What an unmodified `boto3.client("s3")` needs: endpoint, keys, region."""
        key_id, secret = self.credentials(name, version)
        url = f"http://{endpoint}"
        return {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_ENDPOINT_URL": url, "AWS_ENDPOINT_URL_S3": url,
                "AWS_DEFAULT_REGION": region}
