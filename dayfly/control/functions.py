"""Function lifecycle operations (the Lambda management API's semantics), on top of the registry."""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ..errors import (
    InvalidParameter,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    SandboxError,
)
from ..gateway.routes_table import check_conflicts
from ..numbers import digits
from ..sandbox import lang
from ..sandbox.base import InitFailed
from ..scheduler.scheduler import Scheduler
from ..types import LATEST
from . import manifest as mf
from . import unzip
from .bundles import BundleStore
from .changes import Background, OnChange
from .collector import Claim, Collector
from .deps import DepsInstaller, deps_key
from .function_keys import validate_buckets
from .isolation import refusal
from .layers import Layers
from .model import DEFAULTS, AliasConfig, FunctionConfig, function_arn
from .registry import ALIAS_RE, NAME_RE, TOPIC, FunctionState, Registry

Progress = Callable[[str], None] | None

# Lambda API field -> (dayfly config field, validator)
_API_FIELDS = {
    "Handler": "handler", "Runtime": "runtime", "MemorySize": "memory", "Timeout": "timeout",
    "Description": "description", "Role": "role",
}


def _check_range(key: str, v: Any, lo: float, hi: float, integer: bool = True) -> Any:
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or not lo <= v <= hi:
        raise InvalidParameter(f"1 validation error detected: Value '{v}' at '{key}' failed to "
                               f"satisfy constraint: Member must have value between {lo:g} and {hi:g}")
    return v


def api_values(params: dict[str, Any]) -> dict[str, Any]:
    """Validate the Lambda configuration fields present in a request; return dayfly's names."""
    out: dict[str, Any] = {}
    if "Handler" in params:
        out["handler"] = mf.validate_handler(params["Handler"], "Handler", params.get("Runtime"))
    if "Runtime" in params:
        if params["Runtime"] not in mf.RUNTIMES:
            raise InvalidParameter(f"Value {params['Runtime']!r} at 'runtime' failed to satisfy "
                                   f"constraint: Member must be one of {', '.join(mf.RUNTIMES)}")
        out["runtime"] = params["Runtime"]
    if "MemorySize" in params:
        out["memory"] = _check_range("memorySize", params["MemorySize"], 128, 10240)
    if "Timeout" in params:
        out["timeout"] = float(_check_range("timeout", params["Timeout"], 1, 900))
    if "Description" in params:
        if not isinstance(params["Description"], str) or len(params["Description"]) > 256:
            raise InvalidParameter("Description must be a string of at most 256 characters")
        out["description"] = params["Description"]
    if "Role" in params:
        out["role"] = str(params["Role"])
    if "Environment" in params:
        env = params["Environment"] or {}
        if not isinstance(env, dict):
            raise InvalidParameter("Environment must be an object with Variables")
        out["env"] = mf.validate_env(env.get("Variables") or {}, "Environment.Variables")
    if "Layers" in params:
        if not isinstance(params["Layers"], list) or not all(
                isinstance(x, str) for x in params["Layers"]):
            raise InvalidParameter("Layers must be a list of layer version ARNs")
        out["layers"] = list(params["Layers"])  # resolved against the stored layers (layers.py)
    if "PackageType" in params and params["PackageType"] != "Zip":
        raise InvalidParameter("Only PackageType Zip is supported by dayfly")
    if "EphemeralStorage" in params:
        size = (params["EphemeralStorage"] or {}).get("Size")
        out["tmp_size"] = _check_range("ephemeralStorage.size", size, 1, 10240)
    dayfly = params.get("Dayfly") or {}
    if not isinstance(dayfly, dict):
        raise InvalidParameter("Dayfly must be an object")
    if "Network" in dayfly:
        out["network"] = mf.validate_network(dayfly["Network"], "Dayfly.Network")
    if "Files" in dayfly:
        out["files"] = mf.validate_files(dayfly["Files"], "Dayfly.Files")
    if "Secrets" in dayfly:
        out["secrets"] = mf.validate_secret_names(dayfly["Secrets"], "Dayfly.Secrets")
    if "Buckets" in dayfly:
        out["buckets"] = validate_buckets(dayfly["Buckets"], "Dayfly.Buckets")
    if "Pids" in dayfly:
        out["pids"] = _check_range("Dayfly.Pids", dayfly["Pids"], 4, 4096)
    if "MaxOutput" in dayfly:
        out["max_output"] = _check_range("Dayfly.MaxOutput", dayfly["MaxOutput"], 1024,
                                         6 * 1024 * 1024)
    for key, field, lo, hi in (("MaxInstances", "max_instances", 1, 10000),
                               ("MinWarm", "min_warm", 0, 10000)):
        if key in dayfly:
            out[field] = _check_range(f"Dayfly.{key}", dayfly[key], lo, hi)
    if "IdleTimeout" in dayfly:
        out["idle_timeout"] = float(_check_range("Dayfly.IdleTimeout", dayfly["IdleTimeout"], 0,
                                                 86400, integer=False))
    if "Public" in dayfly:
        if not isinstance(dayfly["Public"], bool):
            raise InvalidParameter("Dayfly.Public must be true or false")
        out["public"] = dayfly["Public"]
    if "Isolation" in dayfly:
        if dayfly["Isolation"] not in mf.ISOLATION_TIERS:
            raise InvalidParameter(f"Dayfly.Isolation must be one of {', '.join(mf.ISOLATION_TIERS)}")
        out["isolation"] = dayfly["Isolation"]
    return out


def _check_runtime(runtime: str | None) -> None:
    """A runtime runs on its own interpreter: refused where this node has none."""
    if runtime and runtime.startswith("python"):
        try:
            lang.find(runtime)
        except SandboxError as exc:
            raise InvalidParameter(str(exc)) from None


def decode_zip(code: Any) -> bytes:
    if not isinstance(code, dict) or "ZipFile" not in code:
        raise InvalidParameter("Code.ZipFile is required (S3 and image code sources are not "
                               "supported by dayfly)")
    try:
        return base64.b64decode(code["ZipFile"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise InvalidParameter("Code.ZipFile must be base64-encoded zip bytes") from None


class Functions:
    """Create, update, publish, alias and delete functions; keep the scheduler told."""

    def __init__(self, registry: Registry, bundles: BundleStore, deps: DepsInstaller,
                 scheduler: Scheduler, tiers: set[str],
                 refused: frozenset[str] = frozenset(), *,
                 collector: Collector | None = None) -> None:
        self.registry = registry
        self.bundles = bundles
        self.deps = deps
        self.scheduler = scheduler
        self.tiers = tiers  # the tiers this node runs
        self.refused = refused  # tiers this machine has but the operator did not allow
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.reloads = Background()  # changes made through other nodes, being applied
        self.collector = collector or Collector(bundles, deps, registry, scheduler,
                                                grace_s=0.0, interval_s=60.0)
        self.layers = Layers(registry.db, bundles, registry.region)  # gateway/layers_api.py
        self.layers.load()
        self.collector.layers = self.layers  # their bundles are kept

    # -- changes made through other nodes ----------------------------------------------------

    def listen(self, on_change: OnChange) -> None:
        """Apply functions changed through other nodes as this node's own writes are applied."""
        on_change(TOPIC, lambda name: self.reloads.start(self._reload_all(name)))
        self.layers.listen(on_change)

    async def _reload_all(self, name: str | None) -> None:
        names = {name} if name is not None else (set(self.registry.functions)
                                                 | await self.registry.names())
        collect = False
        for n in sorted(names):
            async with self._locks[n]:
                collect |= await self._reload(n)
        if collect:
            await self.collector.collect()

    async def _reload(self, name: str) -> bool:
        """Re-read one function; retire pools of code or settings gone, keep min_warm pools
        warm, as create, update, publish and delete do here. True if code may be unused now."""
        before, after = await self.registry.reload(name)
        if after is None:
            if before is not None:
                await self.scheduler.remove(name)
            return bool(_uses(before))
        had = {LATEST, *map(str, before.versions)} if before else set()
        now = [LATEST, *map(str, after.versions)]
        for version in had - set(now):
            await self.scheduler.remove(name, version)
        for version in now:
            spec = self.registry.spec(name, version)  # also registers its function keys
            if spec.isolation in self.scheduler.sandboxes and (
                    spec.min_warm or (name, version) in self.scheduler.current):
                self.scheduler.deploy(spec)  # the same revision keeps its pool
        return bool(_uses(before) - _uses(after))

    # -- code and configuration --------------------------------------------------------------

    async def _prepare(self, name: str, zip_bytes: bytes, base: dict[str, Any],
                       explicit: dict[str, Any], progress: Progress,
                       claim: Claim) -> FunctionConfig:
        """Store the bundle, apply its manifest, install deps, and check the handler loads;
        the claim keeps what is stored from collection until the caller registered it."""
        claim.code(self.bundles.digest(zip_bytes))  # on the loop, before anything is written
        bundle = await self.bundles.store(zip_bytes)  # shared with every node before we answer
        values = dict(base)
        text = await asyncio.to_thread(bundle.read, "dayfly.toml")
        if text is not None:
            values.update(mf.parse(text).given())
        values.update(explicit)
        check_conflicts(self.registry.functions, name, values.get("http"))  # 409, cheap: first
        self._check_tier(values.get("isolation"))  # before dependencies are installed for it
        _check_runtime(values.get("runtime"))  # and with the interpreter it names
        if "handler" not in values:
            raise InvalidParameter("Handler is required (in the request or in dayfly.toml)")
        await self._resolve_layers(values)
        reqs = await asyncio.to_thread(bundle.read, "requirements.txt")
        values["deps_key"] = None
        if reqs and reqs.strip():
            claim.deps(deps_key(reqs, values.get("runtime")))
            values["deps_key"], deps_dir = await self.deps.install(
                reqs, bundle.code_dir, progress, values.get("runtime"))
            # Lambda's limit counts layers with the code: here, the installed dependencies
            await asyncio.to_thread(unzip.check_unzipped, bundle.code_dir, deps_dir)
        cfg = FunctionConfig(name=name, code_hex=bundle.hexdigest,
                             code_sha256=bundle.sha256_b64, code_size=bundle.size, **values)
        await self._check(cfg, progress)
        return cfg

    async def _resolve_layers(self, values: dict[str, Any]) -> None:
        """Layers asked by ARN or "name:version" become what the configuration keeps (a 400
        for one that does not exist); their contents are on this node's disk after this."""
        asked = values.get("layers") or []
        if any(isinstance(x, str) for x in asked):
            values["layers"] = self.layers.resolve(asked, values.get("runtime"))
        for layer in values.get("layers") or []:
            if not await self.bundles.ensure(layer["hex"]):
                raise InvalidParameter(f"the contents of layer version {layer['arn']} are on "
                                       "no node")

    def _check_tier(self, asked: str | None) -> None:
        """Refuse the weak tier unless the operator allowed it when the node started."""
        tier = asked or self.registry.default_isolation
        if tier in self.refused:
            raise InvalidParameter(refusal(tier, asked is not None, sorted(self.tiers)))

    async def _check(self, cfg: FunctionConfig, progress: Progress) -> None:
        self._check_tier(cfg.isolation)
        _check_runtime(cfg.runtime)
        tier = self.registry.isolation(cfg)
        if tier not in self.tiers:
            raise InvalidParameter(f"isolation tier '{tier}' is not available on this machine "
                                   f"(available: {', '.join(sorted(self.tiers))}); "
                                   "run `dayfly doctor` to see why")
        if cfg.min_warm > cfg.max_instances:
            raise InvalidParameter("MinWarm cannot exceed MaxInstances")
        data_dir = str(self.registry.data_dir.resolve())
        for path in cfg.files:
            if not os.path.exists(path):
                raise InvalidParameter(f"files: {path} does not exist on this machine")
            real = os.path.realpath(path)
            if real == data_dir or real.startswith(data_dir + "/") or data_dir.startswith(real + "/"):
                raise InvalidParameter(f"files: {path} would expose dayfly's own data")
        if cfg.buckets and tier == "gvisor":
            raise InvalidParameter("the gvisor tier has no bucket bindings and no route to the S3 "
                                   "endpoint (only declared `network` destinations), so `buckets` "
                                   "cannot be reached from it; use the linux tier")
        missing = [s for s in cfg.secrets if s not in self.registry.secrets.values]
        if missing:
            raise InvalidParameter(f"secret(s) {', '.join(missing)} not set; "
                                   f"set with `dayfly secrets set {missing[0]} VALUE`")
        if progress:
            progress(f"loading {cfg.handler} in a throwaway instance")
        try:
            await self.scheduler.check(self.registry.candidate_spec(cfg))
        except InitFailed as exc:
            raise InvalidParameter(_describe_init_error(exc.error)) from None

    async def create(self, params: dict[str, Any], progress: Progress = None) -> FunctionConfig:
        name = params.get("FunctionName")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidParameter("FunctionName must be 1-64 letters, digits, '-' or '_'")
        zip_bytes = decode_zip(params.get("Code"))
        explicit = api_values(params)
        async with self._locks[name]:
            if name in self.registry.functions:
                raise ResourceConflict(f"Function already exist: {name}")
            base = {k: v for k, v in DEFAULTS.items()}
            with self.collector.claim() as claim:
                cfg = await self._prepare(name, zip_bytes, base, explicit, progress, claim)
                await self.registry.put_latest(cfg, create=True)
            self.scheduler.deploy(self.registry.spec(name, LATEST))
            if params.get("Publish"):
                cfg = await self._publish(name, "")
        return cfg

    async def update_code(self, name: str, params: dict[str, Any],
                          progress: Progress = None) -> FunctionConfig:
        zip_bytes = decode_zip({"ZipFile": params.get("ZipFile")})
        async with self._locks[name]:
            st = self.registry.get(name)
            _check_revision(params, st.latest)
            current = st.latest.to_json()
            base = {k: current[k] for k in ("handler", "runtime", "memory", "timeout", "env",
                                            "description", "role", "max_instances", "min_warm",
                                            "idle_timeout", "isolation", "network", "files",
                                            "secrets", "tmp_size", "pids", "max_output",
                                            "buckets", "public", "http", "urls", "kind",
                                            "concurrency",
                                            "layers")}
            with self.collector.claim() as claim:
                cfg = await self._prepare(name, zip_bytes, base, {}, progress, claim)
                await self.registry.put_latest(cfg)
            self.scheduler.deploy(self.registry.spec(name, LATEST))
            if params.get("Publish"):
                cfg = await self._publish(name, "")
        await self.collector.collect()  # the previous $LATEST's code, unless a version has it
        return cfg

    async def update_config(self, name: str, params: dict[str, Any]) -> FunctionConfig:
        explicit = api_values(params)
        async with self._locks[name]:
            st = self.registry.get(name)
            _check_revision(params, st.latest)
            if "layers" in explicit:
                asked = {"runtime": explicit.get("runtime", st.latest.runtime),
                         "layers": explicit["layers"]}
                await self._resolve_layers(asked)
                explicit["layers"] = asked["layers"]
            cfg = st.latest.changed(**explicit)
            self._check_tier(cfg.isolation)  # also when the node lost its opt-in since
            if explicit.keys() & {"handler", "runtime", "env", "isolation", "memory", "buckets",
                                  "layers"}:
                await self._check(cfg, None)
            await self.registry.put_latest(cfg)
            self.scheduler.deploy(self.registry.spec(name, LATEST))
        return cfg

    # -- versions and aliases ----------------------------------------------------------------

    async def publish(self, name: str, params: dict[str, Any]) -> FunctionConfig:
        async with self._locks[name]:
            st = self.registry.get(name)
            _check_revision(params, st.latest)
            self._check_tier(st.latest.isolation)  # a version this node would not run
            sha = params.get("CodeSha256")
            if sha and sha != st.latest.code_sha256:
                raise InvalidParameter(f"CodeSha256 ({sha}) is different from current CodeSha256 "
                                       f"in $LATEST ({st.latest.code_sha256}). Please try again.")
            return await self._publish(name, params.get("Description") or "")

    async def _publish(self, name: str, description: str) -> FunctionConfig:
        st = self.registry.get(name)
        if st.versions:
            last = st.versions[max(st.versions)]
            if _same(last, st.latest):
                return last
        cfg = st.latest.changed(description=description or st.latest.description)
        frozen = await self.registry.publish(name, cfg)
        self.scheduler.deploy(self.registry.spec(name, frozen.version))
        return frozen

    async def create_alias(self, name: str, params: dict[str, Any]) -> AliasConfig:
        alias_name = params.get("Name")
        if not isinstance(alias_name, str) or not ALIAS_RE.fullmatch(alias_name) or alias_name == LATEST:
            raise InvalidParameter("Alias Name must be 1-128 letters, digits, '-' or '_' and not "
                                   "only digits")
        async with self._locks[name]:
            st = self.registry.get(name)
            if alias_name in st.aliases:
                raise ResourceConflict(f"Alias already exists: "
                                       f"{function_arn(self.registry.region, name, alias_name)}")
            alias = AliasConfig(alias_name, name, self._version(st, params.get("FunctionVersion")),
                                str(params.get("Description") or ""),
                                self._weights(st, params.get("RoutingConfig")))
            await self.registry.put_alias(alias)
        return alias

    async def update_alias(self, name: str, alias_name: str, params: dict[str, Any]) -> AliasConfig:
        async with self._locks[name]:
            st = self.registry.get(name)
            alias = self.get_alias(name, alias_name)
            rev = params.get("RevisionId")
            if rev and rev != alias.revision_id:
                raise PreconditionFailed("The Revision Id provided does not match the latest "
                                         "Revision Id. Call the GetAlias API to retrieve the latest "
                                         "Revision Id")
            new = AliasConfig(
                alias_name, name,
                self._version(st, params["FunctionVersion"]) if "FunctionVersion" in params
                else alias.version,
                str(params["Description"]) if "Description" in params else alias.description,
                self._weights(st, params["RoutingConfig"]) if "RoutingConfig" in params
                else alias.weights)
            await self.registry.put_alias(new)
        return new

    def get_alias(self, name: str, alias_name: str) -> AliasConfig:
        alias = self.registry.get(name).aliases.get(alias_name)
        if alias is None:
            raise ResourceNotFound(f"Alias not found: "
                                   f"{function_arn(self.registry.region, name, alias_name)}")
        return alias

    async def delete_alias(self, name: str, alias_name: str) -> None:
        async with self._locks[name]:
            self.registry.get(name)
            await self.registry.delete_alias(name, alias_name)

    def _version(self, st: Any, version: Any) -> str:
        if version == LATEST:
            return LATEST
        if not digits(version) or int(version) not in st.versions:
            arn = function_arn(self.registry.region, st.latest.name, str(version))
            raise ResourceNotFound(f"Function not found: {arn}")
        return version

    def _weights(self, st: Any, routing: Any) -> dict[str, float]:
        if not routing:
            return {}
        weights = routing.get("AdditionalVersionWeights") if isinstance(routing, dict) else None
        if not isinstance(weights, dict):
            raise InvalidParameter("RoutingConfig.AdditionalVersionWeights must be an object")
        out = {}
        for v, w in weights.items():
            self._version(st, v)
            if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w <= 1:
                raise InvalidParameter(f"Weight for version {v} must be between 0.0 and 1.0")
            out[str(v)] = float(w)
        if sum(out.values()) > 1:
            raise InvalidParameter("AdditionalVersionWeights must add up to at most 1.0")
        return out

    # -- concurrency and deletion ------------------------------------------------------------

    async def put_concurrency(self, name: str, params: dict[str, Any]) -> int:
        value = params.get("ReservedConcurrentExecutions")
        _check_range("reservedConcurrentExecutions", value, 0, 1000)
        async with self._locks[name]:
            await self.registry.set_reserved(name, value)
            self._redeploy(name)
        return value  # type: ignore[return-value]

    async def delete_concurrency(self, name: str) -> None:
        async with self._locks[name]:
            self.registry.get(name)
            await self.registry.set_reserved(name, None)
            self._redeploy(name)

    def _redeploy(self, name: str) -> None:
        st = self.registry.get(name)
        for version in (LATEST, *map(str, st.versions)):
            spec = self.registry.spec(name, version)
            if spec.isolation not in self.refused:  # stranded on a tier this start refused
                self.scheduler.deploy(spec)

    async def delete(self, name: str, qualifier: str | None) -> None:
        async with self._locks[name]:
            st = self.registry.get(name)
            if qualifier in (None, ""):
                await self.registry.delete(name)
                await self.scheduler.remove(name)
                await self.collector.collect()
                return
            if qualifier == LATEST or not digits(str(qualifier)):
                raise InvalidParameter("Deletion of $LATEST version or an alias is not allowed "
                                       "with a qualifier; delete the function or the alias")
            number = int(str(qualifier))
            if number not in st.versions:
                raise ResourceNotFound(f"Function not found: "
                                       f"{function_arn(self.registry.region, name, str(qualifier))}")
            users = [a.name for a in st.aliases.values()
                     if a.version == str(number) or str(number) in a.weights]
            if users:
                raise ResourceConflict(f"Unable to delete version because the following aliases "
                                       f"reference it: {users}")
            await self.registry.delete(name, number)
            await self.scheduler.remove(name, str(number))
        await self.collector.collect()


def _uses(st: FunctionState | None) -> set[tuple[str, str | None]]:
    """The code and dependency sets a function's versions use."""
    if st is None:
        return set()
    return {(c.code_hex, c.deps_key) for c in (st.latest, *st.versions.values())}


def _check_revision(params: dict[str, Any], cfg: FunctionConfig) -> None:
    rev = params.get("RevisionId")
    if rev and rev != cfg.revision_id:
        raise PreconditionFailed("The Revision Id provided does not match the latest Revision Id. "
                                 "Call the GetFunction/GetAlias API to retrieve the latest "
                                 "Revision Id")


def _same(a: FunctionConfig, b: FunctionConfig) -> bool:
    skip = {"version", "revision_id", "last_modified", "description"}
    ja, jb = a.to_json(), b.to_json()
    return all(ja[k] == jb[k] for k in ja if k not in skip)


def _describe_init_error(err: dict[str, Any]) -> str:
    """One readable line (plus the user's own frames) for a handler that failed to load."""
    lines = [f"The function's handler failed to load: {err.get('errorType')}: "
             f"{err.get('errorMessage')}"]
    frames = [f.strip() for f in err.get("stackTrace") or [] if "/dayfly/runtime/" not in f]
    if frames:
        lines.append("Traceback (innermost last): " + " | ".join(
            " ".join(f.split()) for f in frames[-3:]))
    return "\n".join(lines)
