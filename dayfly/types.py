"""The shared vocabulary: what a function version is, what an invocation carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LATEST = "$LATEST"
ACCOUNT_ID = "000000000000"


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one instance."""

    memory_mb: int = 128
    timeout_s: float = 3.0
    tmp_mb: int = 64
    pids: int = 64
    max_output_bytes: int = 6 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """Everything a sandbox needs to run one version of a function. Immutable.

    `revision` changes whenever code or configuration changes, so it keys pools:
    a new revision gets a new pool and the old one drains.
    """

    name: str
    version: str
    revision: str
    arn: str
    handler: str
    code_dir: str
    deps_dir: str | None = None
    runtime: str = "python3.11"
    region: str = "us-east-1"
    limits: Limits = field(default_factory=Limits)
    env: tuple[tuple[str, str], ...] = ()
    max_instances: int = 64
    min_warm: int = 0
    idle_timeout_s: float = 300.0
    isolation: str = "process"
    network: tuple[str, ...] = ()  # declared egress, "host:port"
    files: tuple[str, ...] = ()  # host paths mounted read-only at the same path
    buckets: tuple[str, ...] = ()  # declared bucket access, "name:mode" (credentials in env)
    s3_endpoint: str = ""  # "host:port" of this node's S3 endpoint, reachable iff buckets
    kind: str = "function"  # or "asgi", "wsgi": the handler names a web app (runtime/web.py)
    concurrency: int = 1  # invocations one instance serves at once (scheduler/pool.py)
    layers: tuple[str, ...] = ()  # layer contents' host folders, in order (merged at /opt)

    @property
    def pool_key(self) -> str:
        return f"{self.name}:{self.version}:{self.revision}"


@dataclass(slots=True)
class InvokeRequest:
    """One invocation as it travels from the gateway to a sandbox."""

    request_id: str
    payload: bytes
    invoked_arn: str
    deadline_ms: int = 0  # wall-clock epoch milliseconds; set by the scheduler
    client_context: str | None = None
    trace_id: str | None = None
    trigger: str = "api"
    idempotency_key: str | None = None  # stable across redeliveries of one event
    chain: list[str] = field(default_factory=list)  # functions whose work caused this one
    throttled: int = 0  # earlier tries of this same request refused for concurrency (retries)
    # the caller takes the answer as it is made (scheduler/stream.py): the instance sends what
    # a streaming handler yields, or a web app's response, in pieces into it
    stream: Any = None


@dataclass(slots=True)
class InvokeResult:
    """What came back: a payload, or a function error with its JSON body."""

    payload: bytes
    error_type: str | None = None  # None, "Unhandled"
    logs: list[str] = field(default_factory=list)
    init_logs: list[str] = field(default_factory=list)  # output of init, on cold invocations
    duration_ms: float = 0.0
    max_rss_kb: int = 0
    cold: bool = False
    fork_ms: float = 0.0
    init_ms: float = 0.0
    instance_id: str = ""
    retire: bool = False  # the instance must not be reused (it is exiting)

    @property
    def ok(self) -> bool:
        return self.error_type is None


@dataclass(slots=True)
class InvocationRecord:
    """The durable trace of one invocation, kept with a size and age bound."""

    request_id: str
    function: str
    version: str
    trigger: str
    start: float
    end: float
    duration_ms: float
    status: str  # "success" | "error" | "timeout" | "crash" | "throttled"
    cold: bool
    fork_ms: float
    init_ms: float
    max_rss_kb: int
    error: str | None
    output: str  # what the handler wrote (formatted into Lambda's log text when read)
    init_output: str = ""
    memory_mb: int = 128
    instance_id: str = ""
    trace_id: str | None = None  # the caller's W3C traceparent (or X-Amzn-Trace-Id), if any
    event: str | None = None  # the payload and the result, cut at PAYLOAD_PREVIEW bytes
    result: str | None = None
    node: str = ""  # the cluster node that ran it ("" on a single node)
    extra: dict[str, Any] = field(default_factory=dict)
