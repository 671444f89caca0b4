"""A builtin's deployable zip: its folder, the shared `_lib`, its validated `config.json`, and a
`dayfly.toml` whose capabilities come from the configuration (so every deploy states them all)."""

from __future__ import annotations

import io
import json
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from .options import Prepared

ROOT = Path(__file__).resolve().parent
LIB = ROOT / "_lib"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same configuration gives the same code hash


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to dayfly.toml")


def manifest_text(folder: Path, overrides: dict[str, Any]) -> str:
    """The builtin's own dayfly.toml with the configuration's capabilities laid over it."""
    base = tomllib.loads((folder / "dayfly.toml").read_text())
    base.update(overrides)
    tables = {k: v for k, v in base.items() if isinstance(v, dict)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in base.items() if k not in tables]
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "# written by `dayfly deploy builtin:...`\n" + "\n".join(lines) + "\n"


def _sources(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for base, prefix in ((folder, ""), (LIB, "_lib/")):
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(base)
            if "__pycache__" in rel.parts or p.suffix == ".pyc" or not p.is_file():
                continue
            if prefix == "" and rel.as_posix() in ("dayfly.toml", "config.json"):
                continue
            out.append((prefix + rel.as_posix(), p))
    return out


def build(folder_name: str, prepared: Prepared) -> bytes:
    """The zip that `POST /dayfly/v1/functions/NAME/deploy` takes, for one configured builtin."""
    folder = ROOT / folder_name
    files = [(name, path.read_bytes()) for name, path in _sources(folder)]
    files.append(("config.json", json.dumps(prepared.config, indent=2, sort_keys=True).encode()))
    files.append(("dayfly.toml", manifest_text(folder, prepared.manifest).encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files):
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()
