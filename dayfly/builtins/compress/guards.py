"""What an archive may contain and how much it may expand to: names that stay inside the target
prefix, regular files only, bounded entries, bytes and expansion ratio."""

from __future__ import annotations

import posixpath
import re
from typing import Any

_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveRefused(Exception):
    """The archive breaks a rule (traversal, link, bomb limits): nothing of it is kept."""


def safe_name(name: str) -> str:
    """The member name as a relative key part; ArchiveRefused for anything that could escape."""
    if not name or "\x00" in name:
        raise ArchiveRefused(f"entry {name!r}: empty name or NUL byte")
    if name.startswith("/") or _DRIVE.match(name) or "\\" in name:
        raise ArchiveRefused(f"entry {name!r}: absolute paths (and backslashes) are refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(f"entry {name!r}: path traversal ('..') is refused")
    if not parts:
        raise ArchiveRefused(f"entry {name!r}: no file name")
    clean = posixpath.join(*parts)
    if len(clean.encode()) > 900:
        raise ArchiveRefused(f"entry {name[:60]!r}...: name too long for an object key")
    return clean


class Budget:
    """Counts entries and bytes out against the configured limits, as they happen."""

    def __init__(self, cfg: dict[str, Any], archive_size: int) -> None:
        self.max_entries, self.max_total = cfg["max_entries"], cfg["max_total_bytes"]
        self.max_ratio = cfg["max_ratio"]
        self.archive_size = max(1, archive_size)
        self.entries = 0
        self.declared_total = 0  # what the archive says its entries hold
        self.total = 0  # what extraction really produced

    def entry(self, name: str) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise ArchiveRefused(f"more than max_entries={self.max_entries} entries "
                                 f"(at {name!r})")

    def declare(self, size: int, name: str) -> None:
        """Refuse up front what the archive itself says is too big."""
        self.declared_total += size
        self._check(self.declared_total, name)

    def add(self, n: int, name: str) -> None:
        """Bytes actually produced (archives can lie about sizes)."""
        self.total += n
        self._check(self.total, name)

    def _check(self, total: int, name: str) -> None:
        if total > self.max_total:
            raise ArchiveRefused(f"expands past max_total_bytes={self.max_total} (at {name!r})")
        if total > self.max_ratio * self.archive_size:
            raise ArchiveRefused(f"expands more than max_ratio={self.max_ratio:g} times its "
                                 f"{self.archive_size} bytes (at {name!r}): a decompression "
                                 "bomb?")
