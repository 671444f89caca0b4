"""A function folder as the zip that deploy uploads."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

SKIP = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache",
                  ".ruff_cache"})


def zip_dir(folder: Path) -> bytes:
    """The folder as a zip, skipping caches, VCS and virtualenv folders."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if any(part in SKIP for part in rel.parts) or path.suffix == ".pyc":
                continue
            if path.is_symlink():
                continue
            if path.is_file():
                zf.write(path, rel.as_posix())
    return buf.getvalue()
