"""Declared options of a builtin, and a checker that turns raw configuration values into
validated ones with one clear error per mistake."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ..control.manifest import ISOLATION_TIERS, SECRET_RE
from ..errors import InvalidParameter
from ..stores.objects import check_bucket_name
from ..stores.s3errors import S3Error
from ._lib import keys

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Option:
    """One configuration key as `dayfly builtins` lists it."""

    name: str
    type: str  # what the value looks like, for people: "int 1-100", "bucket", ...
    default: Any
    help: str
    required: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default,
                "required": self.required, "help": self.help}


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated configuration: what the function reads, what its manifest grants, and the
    bucket source a `--trigger` deploy wires (None when it has none)."""

    config: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, str] | None = None


class Checker:
    """Reads options from a raw mapping; every error names the builtin and the option."""

    def __init__(self, where: str, raw: Any, names: list[str]) -> None:
        if not isinstance(raw, dict):
            raise InvalidParameter(f"{where}: the configuration must be a table of options")
        self.where, self.raw, self.names = where, raw, names
        unknown = sorted(set(raw) - set(names))
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, 1)
            raise InvalidParameter(
                f"{where}: unknown option '{unknown[0]}'"
                + (f" (did you mean '{close[0]}'?)" if close else "")
                + f"; options: {', '.join(names)}")

    def fail(self, name: str, why: str) -> InvalidParameter:
        return InvalidParameter(f"{self.where}: option '{name}' {why}")

    def get(self, name: str, default: Any = _MISSING) -> Any:
        if name in self.raw:
            return self.raw[name]
        if default is _MISSING:
            raise self.fail(name, "is required")
        return default

    def text(self, name: str, default: Any = _MISSING, choices: tuple[str, ...] = ()) -> Any:
        v = self.get(name, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, str):
            raise self.fail(name, f"must be a string, got {v!r}")
        if choices and v not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def integer(self, name: str, default: Any, lo: int, hi: int) -> Any:
        v = self.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(name, f"must be an integer from {lo} to {hi}, got {v!r}")
        return v

    def number(self, name: str, default: Any, lo: float, hi: float) -> Any:
        v = self.get(name, default)
        if v is None and default is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise self.fail(name, f"must be a number from {lo:g} to {hi:g}, got {v!r}")
        return float(v)

    def flag(self, name: str, default: bool) -> bool:
        v = self.get(name, default)
        if not isinstance(v, bool):
            raise self.fail(name, f"must be true or false, got {v!r}")
        return v

    def bucket(self, name: str, default: Any = _MISSING) -> Any:
        v = self.get(name, default)
        if v is default and default is not _MISSING:
            return v
        try:
            check_bucket_name(v if isinstance(v, str) else "")
        except S3Error:
            raise self.fail(name, f"must be a bucket name (3-63 lowercase letters, digits, '.' "
                                  f"or '-'), got {v!r}") from None
        return v

    def secret(self, name: str) -> str | None:
        v = self.get(name, None)
        if v is None:
            return None
        if not isinstance(v, str) or not SECRET_RE.match(v):
            raise self.fail(name, f"must name a platform secret (`dayfly secrets set NAME "
                                  f"VALUE`), got {v!r}")
        return v

    def pattern(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        v = self.get(name, default)
        try:
            return keys.check(v, allowed)
        except keys.PatternError as exc:
            raise self.fail(name, f"is not a usable key pattern: {exc}") from None

    def prefix(self, name: str) -> str:
        v = self.get(name, "")
        if not isinstance(v, str) or len(v) > 1024 or v.startswith("/"):
            raise self.fail(name, f"must be a key prefix (no leading '/'), got {v!r}")
        return v

    def limits(self, memory: int, timeout: int) -> dict[str, Any]:
        """The `memory`, `timeout` and `isolation` options every builtin has, as manifest keys."""
        out = {"memory": self.integer("memory", memory, 128, 10240),
               "timeout": self.integer("timeout", timeout, 1, 900)}
        if "isolation" in self.raw:
            out["isolation"] = self.text("isolation", None, ISOLATION_TIERS)
        return out


def limit_options(memory: int, timeout: int) -> tuple[Option, ...]:
    return (Option("memory", "int MiB 128-10240", memory, "memory of each instance"),
            Option("timeout", "int s 1-900", timeout, "time limit of one invocation"),
            Option("isolation", "|".join(ISOLATION_TIERS), "platform default",
                   "isolation tier of its instances"))
