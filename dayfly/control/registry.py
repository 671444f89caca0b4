"""The registry: functions, versions and aliases, persisted in SQLite and mirrored in memory.

Reads (resolving a name to a spec on every invocation) are served from memory; every
write goes to the database first, then to memory, then the scheduler is told.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidParameter, ResourceConflict, ResourceNotFound
from ..numbers import digits
from ..stores.db import Database
from ..types import LATEST, FunctionSpec, Limits
from . import provisioned
from .changes import announced
from .function_keys import FunctionKeys
from .model import AliasConfig, FunctionConfig, function_arn
from .secrets import SecretStore

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ALIAS_RE = re.compile(r"^(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}$")
ARN_RE = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:)?(?:\d{12}:)?(?:function:)?"
    r"(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?$")
TOPIC = "function"  # change notices (control/changes.py): key = function name


def split_name(name_or_arn: str, qualifier: str | None = None) -> tuple[str, str | None]:
    """Accept a name, `name:qualifier`, a partial or a full ARN; return (name, qualifier)."""
    m = ARN_RE.match(name_or_arn) if isinstance(name_or_arn, str) else None  # JSON: any type
    if m is None:
        raise InvalidParameter(f"1 validation error detected: Value '{name_or_arn}' at "
                               "'functionName' failed to satisfy constraint: Member must satisfy "
                               "regular expression pattern: (arn:aws:lambda:)?([a-z0-9-]+:)?"
                               "(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
    q = m.group("qualifier")
    if q and qualifier and q != qualifier:
        raise InvalidParameter(f"The derived qualifier from the function name does not match "
                               f"the specified qualifier ({q} != {qualifier}).")
    return m.group("name"), q or qualifier


@dataclass(slots=True)
class FunctionState:
    """Everything known about one function, in memory."""

    latest: FunctionConfig
    versions: dict[int, FunctionConfig] = field(default_factory=dict)
    aliases: dict[str, AliasConfig] = field(default_factory=dict)
    reserved: int | None = None
    # provisioned concurrency: qualifier -> (requested, updated) (control/provisioned.py)
    provisioned: dict[str, tuple[int, float]] = field(default_factory=dict)
    next_version: int = 1
    created: float = field(default_factory=time.time)


class Registry:
    """Functions by name; the source of FunctionSpecs for the scheduler."""

    def __init__(self, db: Database, data_dir: Path, region: str, default_isolation: str, *,
                 secrets_key: bytes | None = None, master_key: bytes | None = None) -> None:
        self.db = db
        self.data_dir = data_dir
        self.region = region
        self.default_isolation = default_isolation
        self.functions: dict[str, FunctionState] = {}
        # a cluster passes keys derived from the cluster key; one node uses its key files
        self.secrets = SecretStore(db, data_dir, secrets_key)
        self.function_keys = FunctionKeys(data_dir, self._buckets_of, master_key)
        self.endpoint = ""  # "host:port" functions reach this node's S3 endpoint at (platform)
        self._specs: dict[tuple[str, str], FunctionSpec] = {}
        # (name, qualifier) -> (generation, secrets' generation, spec): the invoke path's lookup
        # while nothing changed; qualifiers that pick a version per call (weighted aliases) are
        # never kept
        self._resolved: dict[tuple[str, str | None], tuple[int, int, FunctionSpec]] = {}
        self.generation = 0  # bumped by every write: memory views of it (routes) rebuild
        db.call(lambda c: c.execute(provisioned.SCHEMA))

    def load(self) -> None:
        """Read everything from the database (at start-up)."""
        self.functions.update(self.db.call(_read))
        self.generation += 1

    async def reload(self, name: str) -> tuple[FunctionState | None, FunctionState | None]:
        """Re-read one function after another node changed it; return (before, after)."""
        fresh = (await self.db.run(lambda c: _read(c, name))).get(name)
        before = self.functions.pop(name, None)
        if fresh is not None:
            self.functions[name] = fresh
        for key in [k for k in self._specs if k[0] == name]:
            del self._specs[key]
        self.generation += 1  # another node's deploy: its routes and URLs are served here too
        return before, fresh

    async def names(self) -> set[str]:
        """Every function the database holds (for a reload of them all)."""
        return await self.db.run(lambda c: {r[0] for r in c.execute("SELECT name FROM functions")})

    # -- reads ------------------------------------------------------------------------------

    def get(self, name: str) -> FunctionState:
        st = self.functions.get(name)
        if st is None:
            raise ResourceNotFound(f"Function not found: {function_arn(self.region, name)}")
        return st

    def config(self, name: str, qualifier: str | None) -> FunctionConfig:
        """The configuration a qualifier ($LATEST, a version or an alias) points at."""
        st = self.get(name)
        if qualifier in (None, LATEST):
            return st.latest
        assert qualifier is not None
        if digits(qualifier):
            cfg = st.versions.get(int(qualifier))
            if cfg is None:
                raise ResourceNotFound(
                    f"Function not found: {function_arn(self.region, name, qualifier)}")
            return cfg
        alias = st.aliases.get(qualifier)
        if alias is None:
            raise ResourceNotFound(
                f"Function not found: {function_arn(self.region, name, qualifier)}")
        return self.config(name, _pick_version(alias))

    def spec(self, name: str, qualifier: str | None) -> FunctionSpec:
        """The runnable spec for name + qualifier, from memory (the invoke path)."""
        hit = self._resolved.get((name, qualifier))
        if (hit is not None and hit[0] == self.generation
                and hit[1] == self.secrets.generation):
            return hit[2]
        cfg = self.config(name, qualifier)
        key = (name, cfg.version)
        spec = self._specs.get(key)
        if spec is None or spec.revision != self._revision(cfg):
            spec = self._specs[key] = self._build(cfg)
        alias = self.functions[name].aliases.get(qualifier) if qualifier else None
        if alias is None or not alias.weights:
            self._resolved[(name, qualifier)] = (self.generation, self.secrets.generation, spec)
        return spec

    def _revision(self, cfg: FunctionConfig) -> str:
        st = self.functions[cfg.name]
        warm = provisioned.warm(st, cfg.version)  # a changed count: a pool that keeps it
        return f"{cfg.revision_id}/{st.reserved}/{self.secrets.fingerprint(cfg.secrets)}/{warm}"

    def _limits(self, cfg: FunctionConfig) -> Limits:
        return Limits(memory_mb=cfg.memory, timeout_s=cfg.timeout, tmp_mb=cfg.tmp_size,
                      pids=cfg.pids, max_output_bytes=cfg.max_output)

    def _env(self, cfg: FunctionConfig) -> tuple[tuple[str, str], ...]:
        env = dict(cfg.env)
        env.update(self.secrets.env(cfg.secrets))
        if cfg.buckets:
            env.update(self.function_keys.env(cfg.name, cfg.version, self.endpoint, self.region))
        return tuple(sorted(env.items()))

    def _buckets_of(self, name: str, version: str) -> list[str] | None:
        """A version's declared buckets (None if it is gone): function keys' scopes."""
        st = self.functions.get(name)
        if st is None:
            return None
        cfg = st.latest if version == LATEST else (
            st.versions.get(int(version)) if digits(version) else None)
        return cfg.buckets if cfg is not None else None

    def isolation(self, cfg: FunctionConfig) -> str:
        return cfg.isolation or self.default_isolation

    def _build(self, cfg: FunctionConfig) -> FunctionSpec:
        st = self.functions[cfg.name]
        max_instances = cfg.max_instances if st.reserved is None else min(cfg.max_instances,
                                                                           st.reserved)
        deps = str(self.data_dir / "deps" / cfg.deps_key) if cfg.deps_key else None
        return FunctionSpec(
            name=cfg.name, version=cfg.version, revision=self._revision(cfg),
            arn=function_arn(self.region, cfg.name, cfg.version), handler=cfg.handler,
            code_dir=str(self.data_dir / "code" / cfg.code_hex), deps_dir=deps,
            runtime=cfg.runtime, region=self.region, limits=self._limits(cfg),
            env=self._env(cfg), max_instances=max_instances,
            min_warm=min(max(cfg.min_warm, provisioned.warm(st, cfg.version)), max_instances),
            idle_timeout_s=cfg.idle_timeout,
            isolation=self.isolation(cfg), network=tuple(cfg.network), files=tuple(cfg.files),
            buckets=tuple(cfg.buckets), s3_endpoint=self.endpoint if cfg.buckets else "",
            kind=cfg.kind, concurrency=cfg.concurrency, layers=self._layers(cfg))

    def candidate_spec(self, cfg: FunctionConfig) -> FunctionSpec:
        """A spec for a configuration not stored yet (deploy checks)."""
        return FunctionSpec(
            name=cfg.name, version="check", revision="check", arn=function_arn(self.region, cfg.name),
            handler=cfg.handler, code_dir=str(self.data_dir / "code" / cfg.code_hex),
            deps_dir=str(self.data_dir / "deps" / cfg.deps_key) if cfg.deps_key else None,
            runtime=cfg.runtime, region=self.region, limits=self._limits(cfg),
            env=self._env(cfg), isolation=self.isolation(cfg), network=tuple(cfg.network),
            files=tuple(cfg.files), buckets=tuple(cfg.buckets),
            s3_endpoint=self.endpoint if cfg.buckets else "", kind=cfg.kind,
            concurrency=cfg.concurrency, layers=self._layers(cfg))

    def _layers(self, cfg: FunctionConfig) -> tuple[str, ...]:
        return tuple(str(self.data_dir / "code" / layer["hex"]) for layer in cfg.layers)

    def all_specs(self) -> list[FunctionSpec]:
        out = []
        for name, st in self.functions.items():
            out.append(self.spec(name, LATEST))
            out.extend(self.spec(name, str(v)) for v in st.versions)
        return out

    # -- writes -----------------------------------------------------------------------------

    async def put_latest(self, cfg: FunctionConfig, *, create: bool = False) -> None:
        now = time.time()

        def write(conn: sqlite3.Connection) -> None:
            if create:  # one statement: of two nodes creating one name, one gets the conflict
                if not conn.execute("INSERT INTO functions(name, config, created) VALUES (?, ?, ?) "
                                    "ON CONFLICT(name) DO NOTHING",
                                    (cfg.name, json.dumps(cfg.to_json()), now)).rowcount:
                    raise ResourceConflict(f"Function already exist: {cfg.name}")
            else:
                conn.execute("UPDATE functions SET config = ? WHERE name = ?",
                             (json.dumps(cfg.to_json()), cfg.name))
        await self.db.run(announced(self.db, TOPIC, cfg.name, write))
        if create:
            self.functions[cfg.name] = FunctionState(cfg, created=now)
        else:
            self.functions[cfg.name].latest = cfg
        self.generation += 1

    async def publish(self, name: str, cfg: FunctionConfig) -> FunctionConfig:
        st = self.get(name)

        def write(conn: sqlite3.Connection) -> FunctionConfig:
            # the number is taken in one statement: two nodes publishing at once get two
            (number,) = conn.execute("UPDATE functions SET next_version = next_version + 1 "
                                     "WHERE name = ? RETURNING next_version - 1",
                                     (name,)).fetchone()
            frozen = cfg.changed(version=str(number))
            conn.execute("INSERT INTO versions(name, version, config, created) VALUES (?, ?, ?, ?)",
                         (name, number, json.dumps(frozen.to_json()), time.time()))
            return frozen
        frozen = await self.db.run(announced(self.db, TOPIC, name, write))
        number = int(frozen.version)
        st.versions[number] = frozen
        st.next_version = max(st.next_version, number + 1)
        self.generation += 1
        return frozen

    async def put_alias(self, alias: AliasConfig) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO aliases(name, alias, config) VALUES (?, ?, ?) "
                         "ON CONFLICT(name, alias) DO UPDATE SET config = excluded.config",
                         (alias.function, alias.name, json.dumps({
                             "name": alias.name, "function": alias.function,
                             "version": alias.version, "description": alias.description,
                             "weights": alias.weights, "revision_id": alias.revision_id})))
        await self.db.run(announced(self.db, TOPIC, alias.function, write))
        self.get(alias.function).aliases[alias.name] = alias
        self.generation += 1

    async def delete_alias(self, name: str, alias: str) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
            c.execute("DELETE FROM provisioned_concurrency WHERE name = ? AND qualifier = ?",
                      (name, alias))  # its provisioned concurrency goes with it, as on Lambda
        await self.db.run(announced(self.db, TOPIC, name, write))
        self.get(name).aliases.pop(alias, None)
        self.get(name).provisioned.pop(alias, None)
        self.generation += 1

    async def set_provisioned(self, name: str, qualifier: str, requested: int | None) -> None:
        """Set (None: delete) a provisioned concurrency config."""
        now = time.time()

        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM provisioned_concurrency WHERE name = ? AND qualifier = ?",
                      (name, qualifier))
            if requested is not None:
                c.execute("INSERT INTO provisioned_concurrency(name, qualifier, requested, "
                          "updated) VALUES (?, ?, ?, ?)", (name, qualifier, requested, now))
        await self.db.run(announced(self.db, TOPIC, name, write))
        configs = self.get(name).provisioned
        if requested is None:
            configs.pop(qualifier, None)
        else:
            configs[qualifier] = (requested, now)
        self.generation += 1

    async def set_reserved(self, name: str, reserved: int | None) -> None:
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "UPDATE functions SET reserved = ? WHERE name = ?", (reserved, name))))
        self.get(name).reserved = reserved
        self.generation += 1

    async def delete(self, name: str, version: int | None = None) -> None:
        if version is None:
            def drop(c: sqlite3.Connection) -> None:
                c.execute("DELETE FROM functions WHERE name = ?", (name,))
                c.execute("DELETE FROM provisioned_concurrency WHERE name = ?", (name,))
            await self.db.run(announced(self.db, TOPIC, name, drop))
            self.functions.pop(name, None)
            for key in [k for k in self._specs if k[0] == name]:
                del self._specs[key]
        else:
            def drop_version(c: sqlite3.Connection) -> None:
                c.execute("DELETE FROM versions WHERE name = ? AND version = ?", (name, version))
                c.execute("DELETE FROM provisioned_concurrency WHERE name = ? AND qualifier = ?",
                          (name, str(version)))
            await self.db.run(announced(self.db, TOPIC, name, drop_version))
            self.get(name).versions.pop(version, None)
            self.get(name).provisioned.pop(str(version), None)
            self._specs.pop((name, str(version)), None)
        self.generation += 1

    def code_in_use(self) -> set[str]:
        used = set()
        for st in self.functions.values():
            used.add(st.latest.code_hex)
            used.update(v.code_hex for v in st.versions.values())
        return used


def _read(conn: sqlite3.Connection, name: str | None = None) -> dict[str, FunctionState]:
    """Functions (all, or the one named) with their versions and aliases."""
    where, args = (" WHERE name = ?", (name,)) if name is not None else ("", ())
    out: dict[str, FunctionState] = {}
    for row in conn.execute("SELECT * FROM functions" + where, args):
        out[row["name"]] = FunctionState(
            FunctionConfig.from_json(json.loads(row["config"])), reserved=row["reserved"],
            next_version=row["next_version"], created=row["created"])
    # a row of a function created after the first SELECT (PostgreSQL: one snapshot per
    # statement) is skipped: that function's own notification follows
    for row in conn.execute("SELECT * FROM versions" + where + " ORDER BY name, version", args):
        if (st := out.get(row["name"])) is not None:
            st.versions[row["version"]] = FunctionConfig.from_json(json.loads(row["config"]))
    for row in conn.execute("SELECT * FROM aliases" + where, args):
        if (st := out.get(row["name"])) is not None:
            a = AliasConfig(**json.loads(row["config"]))
            st.aliases[a.name] = a
    for fname, configs in provisioned.read(conn, name).items():
        if (st := out.get(fname)) is not None:
            st.provisioned = configs
    return out


def _pick_version(alias: AliasConfig) -> str:
    """Weighted routing: the additional versions get their share, the main version the rest."""
    if alias.weights:
        r = random.random()
        for version, weight in alias.weights.items():
            if r < weight:
                return version
            r -= weight
    return alias.version
