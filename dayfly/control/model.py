"""The control plane's records: a function's configuration (per version) and its aliases."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..types import ACCOUNT_ID, LATEST
from .isolation import describe

DEFAULTS = {"memory": 128, "timeout": 3.0, "max_instances": 64, "min_warm": 0,
            "idle_timeout": 300.0, "runtime": "python3.11"}


def lambda_time(t: float) -> str:
    """Lambda's LastModified format: 2026-11-28T01:00:00.000+0000."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}+0000"


def function_arn(region: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


@dataclass(slots=True)
class FunctionConfig:
    """One version's configuration ($LATEST is mutable, numbered versions are frozen)."""

    name: str
    handler: str
    code_hex: str
    code_sha256: str
    code_size: int
    runtime: str = "python3.11"
    memory: int = 128
    timeout: float = 3.0
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    role: str = f"arn:aws:iam::{ACCOUNT_ID}:role/dayfly"
    max_instances: int = 64
    min_warm: int = 0
    idle_timeout: float = 300.0
    isolation: str | None = None  # None: the platform default tier
    deps_key: str | None = None
    network: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    tmp_size: int = 64
    pids: int = 64
    max_output: int = 6 * 1024 * 1024
    buckets: list[str] = field(default_factory=list)  # "name:read|write|readwrite"
    layers: list[dict[str, Any]] = field(default_factory=list)  # [{arn, hex, size}] (layers.py)
    public: bool = False  # invocable without an API token where tokens are required
    http: dict[str, Any] = field(default_factory=dict)  # [http]: routes (gateway/routes_table.py)
    urls: dict[str, Any] = field(default_factory=dict)  # function URL configs by qualifier ("")
    kind: str = "function"  # or "asgi", "wsgi": the handler is a web app (runtime/web.py)
    concurrency: int = 1  # invocations one instance serves at once (asgi, async def handlers)
    version: str = LATEST
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_modified: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionConfig:
        return cls(**data)

    def changed(self, **kw: Any) -> FunctionConfig:
        """A copy with new values, a new revision id and a new modification time."""
        return replace(self, **kw, revision_id=str(uuid.uuid4()), last_modified=time.time())

    def capabilities(self) -> dict[str, Any]:
        """What the function is granted; everything else is off."""
        return {"network": list(self.network), "files": list(self.files),
                "secrets": list(self.secrets), "buckets": list(self.buckets),
                "env": sorted(self.env),
                "memory_mb": self.memory, "timeout_s": self.timeout, "tmp_mb": self.tmp_size,
                "pids": self.pids, "max_output_bytes": self.max_output}

    def to_lambda(self, region: str, isolation: str) -> dict[str, Any]:
        """Lambda's FunctionConfiguration shape, plus dayfly's own settings under `Dayfly`."""
        out: dict[str, Any] = {
            "FunctionName": self.name,
            "FunctionArn": function_arn(region, self.name,
                                        None if self.version == LATEST else self.version),
            "Runtime": self.runtime,
            "Role": self.role,
            "Handler": self.handler,
            "CodeSize": self.code_size,
            "Description": self.description,
            "Timeout": int(self.timeout) if float(self.timeout).is_integer() else self.timeout,
            "MemorySize": self.memory,
            "LastModified": lambda_time(self.last_modified),
            "CodeSha256": self.code_sha256,
            "Version": self.version,
            "RevisionId": self.revision_id,
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": ["x86_64"],
            "EphemeralStorage": {"Size": self.tmp_size},
            "Dayfly": {"Isolation": isolation, **describe(isolation),
                       "MaxInstances": self.max_instances,
                       "MinWarm": self.min_warm, "IdleTimeout": self.idle_timeout,
                       "DependenciesKey": self.deps_key, "Network": list(self.network),
                       "Files": list(self.files), "Secrets": list(self.secrets),
                       "Pids": self.pids, "MaxOutput": self.max_output,
                       "Buckets": list(self.buckets), "Public": self.public,
                       "Routes": [r["key"] for r in self.http.get("routes", [])], "Kind": self.kind,
                       "Concurrency": self.concurrency},
        }
        if self.env:
            out["Environment"] = {"Variables": dict(self.env)}
        if self.layers:
            out["Layers"] = [{"Arn": x["arn"], "CodeSize": x["size"]} for x in self.layers]
        return out


@dataclass(slots=True)
class AliasConfig:
    """A name for a version, optionally splitting traffic with a second version."""

    name: str
    function: str
    version: str
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_lambda(self, region: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "AliasArn": function_arn(region, self.function, self.name),
            "Name": self.name,
            "FunctionVersion": self.version,
            "Description": self.description,
            "RevisionId": self.revision_id,
        }
        if self.weights:
            out["RoutingConfig"] = {"AdditionalVersionWeights": dict(self.weights)}
        return out
