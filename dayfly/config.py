"""Platform settings: where state lives, what the defaults and limits are."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .cluster.settings import ClusterSettings

MAX_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous request/response limit
MAX_ZIP = 50 * 1024 * 1024  # Lambda's direct-upload zip limit
MAX_UNZIPPED = 250 * 1024 * 1024  # Lambda's unzipped code limit


def default_data_dir() -> Path:
    return Path(os.environ.get("DAYFLY_DATA_DIR", "~/.dayfly")).expanduser()


@dataclass(slots=True)
class Settings:
    """Everything `dayfly up` is told; defaults suit one laptop."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    # The functions' S3 listener: a second one, on loopback, where egress relays reach this
    # node's S3 endpoint; the gateway serves nothing but S3 there. Opened by `dayfly up`.
    function_s3: tuple[str, int] | None = None
    region: str = "us-east-1"
    default_isolation: str | None = None  # None: the strongest tier available
    # names (Host) and page origins accepted besides the node's own (gateway/origin.py)
    allow_hosts: tuple[str, ...] = ()
    allow_origins: tuple[str, ...] = ()
    # the operator's opt-in to the weak `process` tier (no isolation): without it (or
    # default_isolation="process") the node refuses functions on that tier (control/isolation.py)
    allow_weak_isolation: bool = False
    # a zygote with no instances is stopped after this long (its next start pays for a new one)
    zygote_idle_s: float = 600.0
    # unreferenced code and dependencies are removed after this long (None: the zygote idle
    # time plus a minute, so no zygote still has them mounted; control/collector.py)
    code_grace_s: float | None = None
    max_queue: int = 256
    queue_timeout_s: float = 10.0
    records_max: int = 100_000
    records_max_age_s: float = 7 * 24 * 3600.0
    records_flush_s: float = 0.25  # how often buffered invocation records are written
    max_chain_depth: int = 16  # events caused by events, at most this deep (loop detection)
    # cluster mode (PostgreSQL + NATS, dayfly/cluster); None: one node on SQLite and files
    cluster: ClusterSettings | None = None

    @property
    def endpoint(self) -> str:
        """`host:port` where this machine reaches the node (and functions address its S3
        endpoint: the relay takes that name to `function_s3`)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "dayfly.db"

    def ensure_dirs(self) -> None:
        """Create the data dir for its owner only (0700; also an older one left open): every
        other user of the host is kept out of all of it, whatever the modes below. Sandboxes
        read runtime/, code/ and deps/ through bind mounts, never through this path."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        for sub in ("bundles", "code", "deps", "runtime", "tmp"):
            (self.data_dir / sub).mkdir(exist_ok=True)
