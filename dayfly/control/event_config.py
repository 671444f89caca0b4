"""Asynchronous invocation settings per function (Lambda's EventInvokeConfig): retries,
maximum event age, and where results go (another function or a webhook)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidParameter, ResourceNotFound
from ..stores.db import Database
from ..types import LATEST
from .changes import OnChange, announced
from .model import function_arn
from .registry import ARN_RE

MAX_RETRIES, MAX_AGE_S = 2, 6 * 3600  # Lambda's defaults
TOPIC = "event_config"  # change notices (control/changes.py): key = function name
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$")


@dataclass(slots=True)
class EventConfig:
    """One function qualifier's async settings."""

    retries: int = MAX_RETRIES
    max_age_s: int = MAX_AGE_S
    on_success: str | None = None  # a function ARN/name or an http(s) URL
    on_failure: str | None = None
    modified: float = field(default_factory=time.time)

    def to_lambda(self, region: str, name: str, qualifier: str) -> dict[str, Any]:
        dest: dict[str, Any] = {}
        if self.on_success:
            dest["OnSuccess"] = {"Destination": self.on_success}
        if self.on_failure:
            dest["OnFailure"] = {"Destination": self.on_failure}
        return {"LastModified": self.modified, "FunctionArn": function_arn(region, name, qualifier),
                "MaximumRetryAttempts": self.retries,
                "MaximumEventAgeInSeconds": self.max_age_s, "DestinationConfig": dest}


def destination(value: Any, where: str) -> str | None:
    """A destination is a dayfly function (name or Lambda ARN) or an http(s) webhook URL."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not (URL_RE.match(value) or ARN_RE.match(value)):
        raise InvalidParameter(f"{where} must be a function ARN or an http(s) URL, got {value!r}")
    return value


class EventConfigs:
    """Stored in SQLite, mirrored in memory: read on every async delivery."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.configs: dict[tuple[str, str], EventConfig] = {}

    def load(self) -> None:
        self.configs.update(self.db.call(lambda c: _read(c, None)))

    def listen(self, on_change: OnChange) -> None:
        """Take settings put or deleted through other nodes."""
        on_change(TOPIC, self._reload)

    async def _reload(self, name: str | None) -> None:
        fresh = await self.db.run(lambda c: _read(c, name))
        for key in [k for k in self.configs if name in (None, k[0]) and k not in fresh]:
            del self.configs[key]
        self.configs.update(fresh)

    def get(self, name: str, qualifier: str | None) -> EventConfig:
        """The settings in force: the qualifier's own, else the function's, else the defaults."""
        q = qualifier or LATEST
        return self.configs.get((name, q)) or self.configs.get((name, LATEST)) or EventConfig()

    def explicit(self, name: str, qualifier: str | None) -> EventConfig:
        cfg = self.configs.get((name, qualifier or LATEST))
        if cfg is None:
            raise ResourceNotFound(f"The function {name} doesn't have an EventInvokeConfig")
        return cfg

    async def put(self, name: str, qualifier: str | None, params: dict[str, Any],
                  merge: bool) -> EventConfig:
        q = qualifier or LATEST
        current = self.configs.get((name, q)) if merge else None
        cfg = EventConfig(**{k: getattr(current, k) for k in ("retries", "max_age_s",
                                                                 "on_success", "on_failure")}
                          ) if current else EventConfig()
        if "MaximumRetryAttempts" in params:
            v = params["MaximumRetryAttempts"]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2:
                raise InvalidParameter("MaximumRetryAttempts must be between 0 and 2")
            cfg.retries = v
        if "MaximumEventAgeInSeconds" in params:
            v = params["MaximumEventAgeInSeconds"]
            if isinstance(v, bool) or not isinstance(v, int) or not 60 <= v <= 21600:
                raise InvalidParameter("MaximumEventAgeInSeconds must be between 60 and 21600")
            cfg.max_age_s = v
        dest = params.get("DestinationConfig")
        if dest is not None:
            if not isinstance(dest, dict):
                raise InvalidParameter("DestinationConfig must be an object")
            for key, attr in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
                if key in dest:
                    target = (dest[key] or {}).get("Destination") if isinstance(dest[key], dict) \
                        else None
                    setattr(cfg, attr, destination(target, f"DestinationConfig.{key}"))
        cfg.modified = time.time()
        body = json.dumps({"retries": cfg.retries, "max_age_s": cfg.max_age_s,
                           "on_success": cfg.on_success, "on_failure": cfg.on_failure,
                           "modified": cfg.modified})
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "INSERT INTO event_configs(name, qualifier, config) VALUES (?, ?, ?) "
            "ON CONFLICT(name, qualifier) DO UPDATE SET config = excluded.config",
            (name, q, body))))
        self.configs[(name, q)] = cfg
        return cfg

    async def delete(self, name: str, qualifier: str | None) -> None:
        q = qualifier or LATEST
        self.explicit(name, q)
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "DELETE FROM event_configs WHERE name = ? AND qualifier = ?", (name, q))))
        self.configs.pop((name, q), None)

    async def forget_function(self, name: str) -> None:
        await self.db.run(announced(self.db, TOPIC, name, lambda c: c.execute(
            "DELETE FROM event_configs WHERE name = ?", (name,))))
        for key in [k for k in self.configs if k[0] == name]:
            del self.configs[key]

    def of_function(self, name: str) -> list[tuple[str, EventConfig]]:
        return [(q, c) for (n, q), c in self.configs.items() if n == name]


def _read(conn: sqlite3.Connection, name: str | None) -> dict[tuple[str, str], EventConfig]:
    """Every function's settings, or one function's (all its qualifiers)."""
    where, args = (" WHERE name = ?", (name,)) if name is not None else ("", ())
    return {(row["name"], row["qualifier"]): EventConfig(**json.loads(row["config"]))
            for row in conn.execute("SELECT name, qualifier, config FROM event_configs" + where,
                                    args)}
