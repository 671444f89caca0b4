"""Provisioned concurrency: a version or alias keeps that many instances initialized.

A config is a row of `provisioned_concurrency` (function, qualifier); the registry reads it
with its function (FunctionState.provisioned) and announces writes under the function's
topic, so every node follows. A version's pool keeps max(min_warm, the configs naming it or an
alias pointing at it) instances warm, on every node that runs it. Status follows Lambda's
fields: IN_PROGRESS until that many instances are up, then READY.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ..errors import InvalidParameter, ResourceNotFound
from ..numbers import digits
from ..types import LATEST
from .model import function_arn, lambda_time

if TYPE_CHECKING:
    from .functions import Functions
    from .registry import FunctionState

SCHEMA = ("CREATE TABLE IF NOT EXISTS provisioned_concurrency (name TEXT NOT NULL, "
          "qualifier TEXT NOT NULL, requested INTEGER NOT NULL, updated REAL NOT NULL, "
          "PRIMARY KEY (name, qualifier))")
MAX = 10000


def read(conn: sqlite3.Connection, name: str | None) -> dict[str, dict[str, tuple[int, float]]]:
    """function name -> qualifier -> (requested, updated)."""
    where, args = (" WHERE name = ?", (name,)) if name is not None else ("", ())
    out: dict[str, dict[str, tuple[int, float]]] = {}
    for row in conn.execute("SELECT * FROM provisioned_concurrency" + where, args):
        out.setdefault(row["name"], {})[row["qualifier"]] = (int(row["requested"]),
                                                             float(row["updated"]))
    return out


def versions_of(st: FunctionState, qualifier: str) -> list[str]:
    """The version numbers a qualifier's instances run (an alias: both of a weighted one)."""
    if digits(qualifier):
        return [qualifier]
    alias = st.aliases.get(qualifier)
    return [alias.version, *alias.weights] if alias is not None else []


def warm(st: FunctionState, version: str) -> int:
    """Instances the configs keep initialized for `version`."""
    return max((n for q, (n, _) in st.provisioned.items() if version in versions_of(st, q)),
               default=0)


def describe(requested: int, updated: float, allocated: int) -> dict[str, Any]:
    """Lambda's GetProvisionedConcurrencyConfig shape."""
    allocated = min(allocated, requested)
    ready = allocated >= requested
    return {"RequestedProvisionedConcurrentExecutions": requested,
            "AvailableProvisionedConcurrentExecutions": allocated,
            "AllocatedProvisionedConcurrentExecutions": allocated,
            "Status": "READY" if ready else "IN_PROGRESS",
            **({} if ready else {"StatusReason": f"{allocated} of {requested} instances "
                                                 "initialized"}),
            "LastModified": lambda_time(updated)}


class ConfigNotFound(ResourceNotFound):
    """No provisioned concurrency config for this qualifier."""

    code = "ProvisionedConcurrencyConfigNotFoundException"


class Provisioning:
    """Put, get, delete and list configs; a change redeploys the versions it touches, whose
    pools then start (or stop keeping) that many instances."""

    def __init__(self, functions: Functions) -> None:
        self.functions = functions
        self.registry = functions.registry
        self.scheduler = functions.scheduler

    def _target(self, name: str, qualifier: str | None) -> tuple[FunctionState, str]:
        st = self.registry.get(name)
        if not qualifier or qualifier == LATEST:
            raise InvalidParameter("Provisioned Concurrency Configs cannot be applied to "
                                   "unpublished function versions.")
        self.registry.config(name, qualifier)  # 404 for a version or alias that is not there
        return st, qualifier

    async def put(self, name: str, qualifier: str | None, params: dict[str, Any]) -> dict:
        async with self.functions._locks[name]:
            st, qualifier = self._target(name, qualifier)
            n = params.get("ProvisionedConcurrentExecutions")
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX:
                raise InvalidParameter(f"1 validation error detected: Value '{n}' at "
                                       "'provisionedConcurrentExecutions' failed to satisfy "
                                       f"constraint: Member must have value between 1 and {MAX}")
            for version in versions_of(st, qualifier):
                limit = self.registry.spec(name, version).max_instances
                if n > limit:
                    raise InvalidParameter(f"ProvisionedConcurrentExecutions {n} exceeds the "
                                           f"{limit} instances version {version} may run "
                                           "(MaxInstances, or reserved concurrency)")
            await self.registry.set_provisioned(name, qualifier, n)
            self._redeploy(name, st, qualifier)
        return self.get(name, qualifier)

    async def delete(self, name: str, qualifier: str | None) -> None:
        async with self.functions._locks[name]:
            st, qualifier = self._target(name, qualifier)
            if qualifier not in st.provisioned:
                raise ConfigNotFound(f"No Provisioned Concurrency Config found for this "
                                     f"function: {function_arn(self.registry.region, name, qualifier)}")
            await self.registry.set_provisioned(name, qualifier, None)
            self._redeploy(name, st, qualifier)

    def _redeploy(self, name: str, st: FunctionState, qualifier: str) -> None:
        for version in versions_of(st, qualifier):
            spec = self.registry.spec(name, version)  # a new revision: its pool keeps the count
            if spec.isolation in self.scheduler.sandboxes:
                self.scheduler.deploy(spec)

    def get(self, name: str, qualifier: str | None) -> dict:
        st, qualifier = self._target(name, qualifier)
        if qualifier not in st.provisioned:
            raise ConfigNotFound(f"No Provisioned Concurrency Config found for this function: "
                                 f"{function_arn(self.registry.region, name, qualifier)}")
        requested, updated = st.provisioned[qualifier]
        version = versions_of(st, qualifier)[0]
        pool = self.scheduler.current.get((name, version))
        up = 0
        if pool is not None and pool.spec.revision == self.registry.spec(name, version).revision:
            up = len(pool.idle) + len(pool.busy)  # initialized: started, idle or at work
        return describe(requested, updated, up)

    def list(self, name: str) -> list[dict]:
        st = self.registry.get(name)
        return [{"FunctionArn": function_arn(self.registry.region, name, q), **self.get(name, q)}
                for q in sorted(st.provisioned)]
