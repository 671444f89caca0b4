"""Dependency rules of the code map (docs/ARCHITECTURE.md), checked on the source."""

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "dayfly"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = path.relative_to(PKG.parent).with_suffix("").parts[: -node.level]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            out.add(base)
    return out


def test_runtime_imports_only_the_standard_library():
    for f in (PKG / "runtime").glob("*.py"):
        for mod in imports(f):
            top = mod.split(".")[0]
            assert top in sys.stdlib_module_names or mod.startswith("dayfly.runtime"), (f, mod)


def test_scheduler_reaches_sandboxes_only_through_the_interface():
    for f in (PKG / "scheduler").glob("*.py"):
        for mod in imports(f):
            if mod.startswith("dayfly.sandbox"):
                assert mod in ("dayfly.sandbox.base", "dayfly.sandbox.safe"), (f, mod)


def test_stores_import_nothing_above_them():
    allowed = ("dayfly.stores", "dayfly.types", "dayfly.errors", "dayfly.config",
               "dayfly.scheduler.hooks")
    for f in (PKG / "stores").glob("*.py"):
        for mod in imports(f):
            if mod.startswith("dayfly"):
                assert mod.startswith(allowed), (f, mod)


def test_cli_uses_the_http_api_not_the_internals():
    for f in (PKG / "cli").glob("*.py"):
        for mod in imports(f):
            if mod.startswith(("dayfly.scheduler", "dayfly.sandbox", "dayfly.control",
                               "dayfly.stores")):
                raise AssertionError(f"{f.name} imports {mod}: the CLI must use the HTTP API")


def test_privileged_calls_live_in_one_module():
    """ctypes (and with it every raw syscall) only in dayfly/runtime/jail.py."""
    for f in PKG.rglob("*.py"):
        if f.name == "jail.py" and f.parent.name == "runtime":
            continue
        for mod in imports(f):
            assert mod.split(".")[0] != "ctypes", f"{f} imports ctypes: use dayfly.runtime.jail"
