"""Lambda layers: versions of zips that functions mount read-only under /opt, in order.

A layer version's zip is stored like a code bundle (content-addressed, unpacked once, shared
with every node: bundles.py, shared_code.py); its record is a row of `layer_versions`,
mirrored in memory and followed across nodes (topic "layer", key = layer name). Version
numbers are never reused: `layers.next_version` counts on after a deletion, as Lambda does.

A function keeps the layer versions it was configured with (their bundle names are in its
configuration), so deleting a layer version does not break the functions using it, as on
Lambda; the collector keeps a layer's bundle while a version or a function refers to it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidParameter, ResourceNotFound
from ..numbers import digits
from ..stores.db import Database
from ..types import ACCOUNT_ID
from .bundles import BundleStore
from .changes import OnChange, announced
from .model import lambda_time

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS layers (name TEXT PRIMARY KEY, next_version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS layer_versions (name TEXT NOT NULL, version INTEGER NOT NULL, "
    "config TEXT NOT NULL, PRIMARY KEY (name, version))",
)
TOPIC = "layer"  # change notices (control/changes.py): key = layer name
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,140}$")
ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:layer:(?P<name>[A-Za-z0-9_-]{1,140})"
                    r"(?::(?P<version>[0-9]{1,9}))?$")
MAX_LAYERS = 5  # per function, as on Lambda
MAX_RUNTIMES = 15


@dataclass(slots=True)
class LayerVersion:
    name: str
    version: int
    code_hex: str  # the bundle: code/<hex>/ on disk, code/<hex> in the shared store
    code_sha256: str
    code_size: int
    description: str = ""
    runtimes: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    license: str = ""
    created: float = field(default_factory=time.time)

    def arn(self, region: str) -> str:
        return f"{layer_arn(region, self.name)}:{self.version}"

    def to_lambda(self, region: str, base_url: str = "") -> dict[str, Any]:
        """Lambda's GetLayerVersion shape (PublishLayerVersion's too)."""
        out: dict[str, Any] = {
            "Content": {"Location": f"{base_url}/dayfly/v1/bundles/{self.code_hex}.zip",
                        "CodeSha256": self.code_sha256, "CodeSize": self.code_size},
            "LayerArn": layer_arn(region, self.name), "LayerVersionArn": self.arn(region),
            "Description": self.description, "CreatedDate": lambda_time(self.created),
            "Version": self.version, "CompatibleRuntimes": list(self.runtimes),
            "CompatibleArchitectures": list(self.architectures)}
        if self.license:
            out["LicenseInfo"] = self.license
        return out

    def summary(self, region: str) -> dict[str, Any]:
        """ListLayerVersions' item (and ListLayers' LatestMatchingVersion)."""
        out = self.to_lambda(region)
        del out["Content"], out["LayerArn"]
        return out


def layer_arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:layer:{name}"


def _read(c: sqlite3.Connection, name: str | None) -> dict[str, dict[int, LayerVersion]]:
    where, args = (" WHERE name = ?", (name,)) if name is not None else ("", ())
    out: dict[str, dict[int, LayerVersion]] = {}
    for row in c.execute("SELECT name, version, config FROM layer_versions" + where, args):
        out.setdefault(row["name"], {})[int(row["version"])] = LayerVersion(
            **json.loads(row["config"]))
    return out


def _strings(params: dict[str, Any], key: str, most: int, allowed: tuple[str, ...] | None = None
             ) -> list[str]:
    value = params.get(key) or []
    if (not isinstance(value, list) or len(value) > most
            or not all(isinstance(v, str) and v for v in value)
            or (allowed is not None and any(v not in allowed for v in value))):
        raise InvalidParameter(f"{key} must be a list of at most {most} names"
                               + (f" among {', '.join(allowed)}" if allowed else ""))
    return list(value)


class Layers:
    """Layer versions by name, in the database and mirrored in memory."""

    def __init__(self, db: Database, bundles: BundleStore, region: str) -> None:
        self.db = db
        self.bundles = bundles
        self.region = region
        self.versions: dict[str, dict[int, LayerVersion]] = {}
        def create(c: sqlite3.Connection) -> None:
            for statement in SCHEMA:
                c.execute(statement)
        db.call(create)

    def load(self) -> None:
        self.versions = self.db.call(lambda c: _read(c, None))

    def listen(self, on_change: OnChange) -> None:
        """Take layer versions published or deleted through other nodes."""
        on_change(TOPIC, self._reload)

    async def _reload(self, name: str | None) -> None:
        fresh = await self.db.run(lambda c: _read(c, name))
        for gone in ({name} if name is not None else set(self.versions)) - set(fresh):
            self.versions.pop(gone, None)
        self.versions.update(fresh)

    # -- the API -----------------------------------------------------------------------------

    async def publish(self, name: str, zip_bytes: bytes, params: dict[str, Any]) -> LayerVersion:
        """PublishLayerVersion: store the zip (shared with every node) and number it."""
        from .manifest import RUNTIMES

        check_name(name)
        description = params.get("Description", "")
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidParameter("Description must be a string of at most 256 characters")
        license_info = params.get("LicenseInfo", "")
        if not isinstance(license_info, str) or len(license_info) > 512:
            raise InvalidParameter("LicenseInfo must be a string of at most 512 characters")
        runtimes = _strings(params, "CompatibleRuntimes", MAX_RUNTIMES,
                            (*RUNTIMES, "provided", "provided.al2", "provided.al2023"))
        archs = _strings(params, "CompatibleArchitectures", 2, ("x86_64", "arm64"))
        bundle = await self.bundles.store(zip_bytes)
        layer = LayerVersion(name=name, version=0, code_hex=bundle.hexdigest,
                             code_sha256=bundle.sha256_b64, code_size=bundle.size,
                             description=description, runtimes=runtimes, architectures=archs,
                             license=license_info)

        def write(c: sqlite3.Connection) -> int:
            c.execute("INSERT INTO layers(name, next_version) VALUES (?, 1) "
                      "ON CONFLICT (name) DO NOTHING", (name,))
            # the row's update takes its lock: of two nodes publishing at once, one waits
            c.execute("UPDATE layers SET next_version = next_version + 1 WHERE name = ?", (name,))
            number = int(c.execute("SELECT next_version FROM layers WHERE name = ?",
                                   (name,)).fetchone()[0]) - 1
            layer.version = number
            c.execute("INSERT INTO layer_versions(name, version, config) VALUES (?, ?, ?)",
                      (name, number, json.dumps(asdict(layer))))
            return number

        await self.db.run(announced(self.db, TOPIC, name, write))
        self.versions.setdefault(name, {})[layer.version] = layer
        return layer

    def get(self, name: str, version: Any) -> LayerVersion:
        check_name(name)
        number = int(version) if digits(str(version)) else -1
        found = self.versions.get(name, {}).get(number)
        if found is None:
            raise ResourceNotFound("The resource you requested does not exist. "
                                   f"(layer version {layer_arn(self.region, name)}:{version})")
        return found

    def of(self, name: str) -> list[LayerVersion]:
        """A layer's versions, newest first."""
        check_name(name)
        return [v for _, v in sorted(self.versions.get(name, {}).items(), reverse=True)]

    async def delete(self, name: str, version: Any) -> None:
        """DeleteLayerVersion; deleting one that is not there succeeds, as on Lambda."""
        check_name(name)
        if not digits(str(version)):
            raise InvalidParameter(f"VersionNumber must be a positive integer, not {version!r}")
        number = int(version)
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "DELETE FROM layer_versions WHERE name = ? AND version = ?", (name, number))))
        self.versions.get(name, {}).pop(number, None)
        if not self.versions.get(name, True):
            self.versions.pop(name, None)

    # -- functions' use ----------------------------------------------------------------------

    def resolve(self, arns: Any, runtime: str | None) -> list[dict[str, Any]]:
        """Validate a function's `Layers` (version ARNs, or "name:version" from dayfly.toml);
        return what its configuration keeps: [{"arn", "hex", "size"}], in the given order."""
        if not isinstance(arns, list) or len(arns) > MAX_LAYERS:
            raise InvalidParameter(f"Layers must be a list of at most {MAX_LAYERS} layer version "
                                   "ARNs")
        out, names = [], set()
        for arn in arns:
            if not isinstance(arn, str):
                raise InvalidParameter("Layers must be a list of layer version ARNs")
            m = ARN_RE.match(arn)
            short = re.match(r"^([A-Za-z0-9_-]{1,140}):([0-9]{1,9})$", arn)
            if m and m.group("version"):
                name, version = m.group("name"), m.group("version")
            elif short:
                name, version = short.group(1), short.group(2)
            else:
                raise InvalidParameter(f"Layers: {arn!r} is not a layer version ARN "
                                       "(arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION) "
                                       "or NAME:VERSION")
            found = self.versions.get(name, {}).get(int(version))
            if found is None:
                raise InvalidParameter(f"Layer version {layer_arn(self.region, name)}:{version} "
                                       "does not exist")
            if name in names:
                raise InvalidParameter(f"Layers: two versions of layer {name}")
            if runtime and found.runtimes and runtime not in found.runtimes:
                raise InvalidParameter(f"Layer version {found.arn(self.region)} is not compatible "
                                       f"with {runtime} (CompatibleRuntimes: "
                                       f"{', '.join(found.runtimes)})")
            names.add(name)
            out.append({"arn": found.arn(self.region), "hex": found.code_hex,
                        "size": found.code_size})
        return out

    def code_hexes(self) -> set[str]:
        """The bundles every stored layer version needs kept (the collector asks)."""
        return {v.code_hex for versions in self.versions.values() for v in versions.values()}


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidParameter(f"1 validation error detected: Value '{name}' at 'layerName' "
                               "failed to satisfy constraint: Member must satisfy regular "
                               "expression pattern: [a-zA-Z0-9-_]+")
