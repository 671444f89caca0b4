"""`dayfly.toml`: what a function declares about itself, validated with clear errors."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import InvalidParameter
from ..numbers import digits
from ..sandbox.runtime_api import PROVIDED
from .function_keys import validate_buckets

ISOLATION_TIERS = ("process", "linux", "gvisor")
RUNTIMES = ("python3.9", "python3.10", "python3.11", "python3.12", "python3.13", *PROVIDED)
HANDLER_RE = re.compile(r"^[A-Za-z_][\w/]*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*$")  # or module:app
KINDS = ("function", "asgi", "wsgi")  # what the handler names: a function, or a web app
ENV_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_RUNTIME_API",
})


@dataclass(slots=True)
class Manifest:
    """The keys of dayfly.toml; None means 'not said, keep the current or default value'."""

    handler: str | None = None
    runtime: str | None = None
    memory: int | None = None
    timeout: float | None = None
    max_instances: int | None = None
    min_warm: int | None = None
    idle_timeout: float | None = None
    isolation: str | None = None
    description: str | None = None
    env: dict[str, str] | None = field(default=None)
    # capabilities: nothing is granted unless declared
    network: list[str] | None = None  # egress allow-list of "host:port"
    files: list[str] | None = None  # host paths mounted read-only
    secrets: list[str] | None = None  # names of platform-stored secrets, exposed as env vars
    tmp_size: int | None = None  # MiB of /tmp
    pids: int | None = None  # processes + threads at most
    max_output: int | None = None  # bytes of response and of log output per invocation
    buckets: list[str] | None = None  # built-in store buckets, "name:read|write|readwrite"
    layers: list[str] | None = None  # "name:version" (or layer version ARNs), in /opt in order
    public: bool | None = None  # invocable without an API token
    http: dict[str, Any] | None = None  # [http]: routes, auth, cors, limits (gateway/routes_table)
    kind: str | None = None  # "asgi"/"wsgi": the handler ("app:app") is a web app (runtime/web.py)
    concurrency: int | None = None  # invocations one instance serves at once (asgi, async def)

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


def _int(key: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InvalidParameter(f"dayfly.toml: '{key}' must be an integer from {lo} to {hi}, got {v!r}")
    return v


def _num(key: str, v: Any, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise InvalidParameter(f"dayfly.toml: '{key}' must be a number from {lo:g} to {hi:g}, got {v!r}")
    return float(v)


def validate_handler(v: Any, where: str = "handler", runtime: Any = None) -> str:
    """A Python handler names module.function; a custom runtime's is its own (`bootstrap`,
    say): any word without spaces, as Lambda takes it."""
    if runtime in PROVIDED and isinstance(v, str) and 0 < len(v) <= 128 and v.isprintable() \
            and not any(c.isspace() for c in v):
        return v
    if not isinstance(v, str) or not HANDLER_RE.match(v) or len(v) > 128:
        raise InvalidParameter(f"{where} must look like 'module.function' (e.g. handler.handler), "
                               f"got {v!r}")
    return v


def validate_env(v: Any, where: str = "env") -> dict[str, str]:
    if not isinstance(v, dict):
        raise InvalidParameter(f"{where} must be a table of NAME = \"value\"")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or not ENV_KEY_RE.match(k):
            raise InvalidParameter(f"{where}: invalid variable name {k!r}")
        if k in RESERVED_ENV:
            raise InvalidParameter(f"{where}: {k} is reserved and set by dayfly")
        if not isinstance(val, str | int | float | bool):
            raise InvalidParameter(f"{where}: {k} must be a string, got {type(val).__name__}")
        out[k] = str(val).lower() if isinstance(val, bool) else str(val)
    return out


HOST_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}))$")
SECRET_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
FORBIDDEN_FILES = ("/", "/proc", "/sys", "/dev", "/run", "/boot",
                   "/tmp")  # /tmp is each instance's own scratch space: it would hide them


def _list(v: Any, where: str) -> list:
    if not isinstance(v, list) or len(v) > 64:
        raise InvalidParameter(f"{where} must be a list (at most 64 entries)")
    return v


def validate_network(v: Any, where: str = "network") -> list[str]:
    """Egress allow-list entries: `host:port`, host a name, IPv4 address or [IPv6]."""
    out = []
    for e in _list(v, where):
        host, sep, port = e.rpartition(":") if isinstance(e, str) else ("", "", "")
        if (not sep or not HOST_RE.match(host) or not digits(port, 5)
                or not 1 <= int(port) <= 65535):
            raise InvalidParameter(f"{where}: {e!r} is not host:port (e.g. api.example.com:443)")
        out.append(f"{host.lower()}:{int(port)}")
    return sorted(set(out))


def validate_files(v: Any, where: str = "files") -> list[str]:
    """Read-only host paths: absolute, normalised, not the host's system trees."""
    out = []
    for p in _list(v, where):
        if not isinstance(p, str) or not p.startswith("/") or "\0" in p:
            raise InvalidParameter(f"{where}: {p!r} must be an absolute path")
        norm = "/" + "/".join(x for x in p.split("/") if x and x != ".")
        if ".." in norm.split("/") or any(norm == f or norm.startswith(f + "/")
                                          for f in FORBIDDEN_FILES if f != "/") or norm == "/":
            raise InvalidParameter(f"{where}: {p!r} cannot be mounted into a function")
        out.append(norm)
    return sorted(set(out))


def validate_secret_names(v: Any, where: str = "secrets") -> list[str]:
    out = []
    for name in _list(v, where):
        if not isinstance(name, str) or not SECRET_RE.match(name) or name in RESERVED_ENV:
            raise InvalidParameter(f"{where}: {name!r} is not a valid secret name")
        out.append(name)
    return sorted(set(out))


def parse(text: str) -> Manifest:
    """Parse and validate dayfly.toml text; InvalidParameter names the bad key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidParameter(f"dayfly.toml is not valid TOML: {exc}") from None
    known = {f.name for f in fields(Manifest)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidParameter(f"dayfly.toml: unknown key(s) {', '.join(unknown)} "
                               f"(known: {', '.join(sorted(known))})")
    m = Manifest()
    if "handler" in data:
        m.handler = validate_handler(data["handler"], "dayfly.toml: 'handler'", data.get("runtime"))
    if "runtime" in data:
        if data["runtime"] not in RUNTIMES:
            raise InvalidParameter(f"dayfly.toml: 'runtime' must be one of {', '.join(RUNTIMES)}")
        m.runtime = data["runtime"]
    if "memory" in data:
        m.memory = _int("memory", data["memory"], 128, 10240)
    if "timeout" in data:
        m.timeout = _num("timeout", data["timeout"], 1, 900)
    if "max_instances" in data:
        m.max_instances = _int("max_instances", data["max_instances"], 1, 10000)
    if "min_warm" in data:
        m.min_warm = _int("min_warm", data["min_warm"], 0, 10000)
    if "idle_timeout" in data:
        m.idle_timeout = _num("idle_timeout", data["idle_timeout"], 0, 86400)
    if "isolation" in data:
        if data["isolation"] not in ISOLATION_TIERS:
            raise InvalidParameter(f"dayfly.toml: 'isolation' must be one of "
                                   f"{', '.join(ISOLATION_TIERS)}, got {data['isolation']!r}")
        m.isolation = data["isolation"]
    if "description" in data:
        if not isinstance(data["description"], str) or len(data["description"]) > 256:
            raise InvalidParameter("dayfly.toml: 'description' must be a string of at most 256 characters")
        m.description = data["description"]
    if "env" in data:
        m.env = validate_env(data["env"], "dayfly.toml: [env]")
    if "network" in data:
        m.network = validate_network(data["network"], "dayfly.toml: 'network'")
    if "files" in data:
        m.files = validate_files(data["files"], "dayfly.toml: 'files'")
    if "secrets" in data:
        m.secrets = validate_secret_names(data["secrets"], "dayfly.toml: 'secrets'")
    if "tmp_size" in data:
        m.tmp_size = _int("tmp_size", data["tmp_size"], 1, 10240)
    if "pids" in data:
        m.pids = _int("pids", data["pids"], 4, 4096)
    if "max_output" in data:
        m.max_output = _int("max_output", data["max_output"], 1024, 6 * 1024 * 1024)
    if "buckets" in data:
        m.buckets = validate_buckets(data["buckets"], "dayfly.toml: 'buckets'")
    if "layers" in data:
        if not isinstance(data["layers"], list) or not all(isinstance(x, str) for x in data["layers"]):
            raise InvalidParameter('dayfly.toml: \'layers\' must be a list of "name:version"')
        m.layers = list(data["layers"])  # checked against the stored layers at deploy
    if "kind" in data:
        if data["kind"] not in KINDS:
            raise InvalidParameter(f"dayfly.toml: 'kind' must be one of {', '.join(KINDS)}, "
                                   f"got {data['kind']!r}")
        m.kind = data["kind"]
    if "concurrency" in data:
        m.concurrency = _int("concurrency", data["concurrency"], 1, 1000)
        if m.concurrency > 1 and m.kind == "wsgi":
            raise InvalidParameter("dayfly.toml: 'concurrency' above 1 needs kind = \"asgi\" or "
                                   "an async def handler (a WSGI app serves one request at a time)")
        if m.concurrency > 1 and m.buckets:
            raise InvalidParameter("dayfly.toml: 'concurrency' above 1 cannot be combined with "
                                   "'buckets' (bucket bindings serve one invocation at a time)")
    if "public" in data:
        if not isinstance(data["public"], bool):
            raise InvalidParameter(f"dayfly.toml: 'public' must be true or false, got {data['public']!r}")
        m.public = data["public"]
    if "http" in data:
        from ..gateway.routes_table import validate_http
        m.http = validate_http(data["http"])
    if m.min_warm is not None and m.max_instances is not None and m.min_warm > m.max_instances:
        raise InvalidParameter("dayfly.toml: 'min_warm' cannot exceed 'max_instances'")
    return m
