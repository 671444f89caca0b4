"""Create the peers' private virtual environments and read package versions."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

VENVS_DIR = Path(__file__).resolve().parent.parent / ".venvs"
VERSIONS_SCRIPT = """
import importlib.metadata, json, sys
print(json.dumps({name: importlib.metadata.version(name) for name in sys.argv[1:]}))
"""


def ensure_venv(name: str, requirement: str, entry_point: str) -> Path:
    """Create .venvs/NAME with REQUIREMENT unless ENTRY_POINT exists; return its bin dir."""
    venv = VENVS_DIR / name
    bin_dir = venv / "bin"
    if not (bin_dir / entry_point).exists():
        print(f"creating {venv} with {requirement} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", requirement]
        subprocess.run(pip, check=True)
    return bin_dir


def venv_versions(bin_dir: Path, *dists: str) -> dict[str, str]:
    """Return the installed versions of DISTS in the venv of BIN_DIR."""
    argv = [str(bin_dir / "python"), "-c", VERSIONS_SCRIPT, *dists]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def local_version(dist: str) -> str:
    """Return the version of DIST in the harness's own interpreter, or 'not installed'."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
