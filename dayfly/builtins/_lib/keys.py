"""Output key patterns (`thumbs/{stem}-{width}.webp`): checking, rendering, and telling whether
a key could be one of a pattern's own outputs (so a builtin never feeds itself)."""

from __future__ import annotations

import posixpath
import re
import string

# placeholders every pattern may use, from the input object's key
INPUT_FIELDS = ("key", "dir", "name", "stem", "suffix", "bucket")
_COMPOUND = (".tar.gz", ".tar.zst", ".tar.bz2", ".tar.xz")


class PatternError(ValueError):
    """A key pattern names an unknown placeholder or uses format syntax."""


def fields(pattern: str) -> list[str]:
    """The placeholder names of a pattern, in order."""
    out = []
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise PatternError(f"{pattern!r} is not a key pattern: {exc}") from None
    for _literal, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise PatternError(f"{pattern!r}: use plain placeholders like {{stem}}, not {{{name}"
                               f"{'!' + conv if conv else ''}{':' + spec if spec else ''}}}")
        out.append(name)
    return out


def check(pattern: str, allowed: tuple[str, ...]) -> str:
    """The pattern, if every placeholder is allowed; else PatternError."""
    if not isinstance(pattern, str) or not pattern.strip("/"):
        raise PatternError("a key pattern must be a non-empty string")
    bad = [f for f in fields(pattern) if f not in allowed]
    if bad:
        raise PatternError(f"{pattern!r}: unknown placeholder {{{bad[0]}}} "
                           f"(known: {', '.join('{' + a + '}' for a in allowed)})")
    return pattern


def split_name(key: str) -> tuple[str, str]:
    """(stem, suffix without the dot) of a key's last segment; `a.tar.gz` → (a, tar.gz)."""
    name = posixpath.basename(key)
    for comp in _COMPOUND:
        if name.lower().endswith(comp) and len(name) > len(comp):
            return name[:-len(comp)], comp[1:]
    stem, dot, suffix = name.rpartition(".")
    return (stem, suffix) if dot and stem else (name, "")


def input_fields(bucket: str, key: str) -> dict[str, str]:
    stem, suffix = split_name(key)
    return {"key": key, "dir": posixpath.dirname(key), "name": posixpath.basename(key),
            "stem": stem, "suffix": suffix, "bucket": bucket}


def render(pattern: str, values: dict[str, object]) -> str:
    """The key for these values: empty segments collapse, no leading slash."""
    out = pattern.format_map({k: str(v) for k, v in values.items()})
    out = re.sub(r"/{2,}", "/", out).lstrip("/")
    if not out:
        raise PatternError(f"{pattern!r} gives an empty key for {values.get('key', '')!r}")
    return out


def static_ends(pattern: str, known: dict[str, str] | None = None) -> tuple[str, str]:
    """The literal text before the first and after the last unknown placeholder."""
    text = pattern
    for k, v in (known or {}).items():
        text = text.replace("{" + k + "}", v)
    parsed = list(string.Formatter().parse(text))
    names = [p for p in parsed if p[1] is not None]
    if not names:
        return text, text
    head = parsed[0][0]
    tail = parsed[-1][0] if parsed[-1][1] is None else ""
    return head.lstrip("/"), tail


def may_overlap(pattern: str, known: dict[str, str], prefix: str, suffix: str) -> bool:
    """Could a key made by the pattern match a trigger's prefix and suffix filters?"""
    head, tail = static_ends(pattern, known)
    if not fields(pattern.format_map(_Keep(known))):  # fully literal
        return head.startswith(prefix) and head.endswith(suffix)
    prefix_ok = head.startswith(prefix) or prefix.startswith(head)
    suffix_ok = tail.endswith(suffix) or suffix.endswith(tail)
    return prefix_ok and suffix_ok


def own_output(pattern: str, known: dict[str, str], key: str) -> bool:
    """Does `key` have the shape of one of the pattern's outputs?"""
    text = pattern.format_map(_Keep(known))
    regex = ""
    for literal, name, _spec, _conv in string.Formatter().parse(text):
        regex += re.escape(literal)
        if name is not None:
            regex += ".*" if name in ("key", "dir") else "[^/]*"
    regex = re.sub(r"(\\/)+", "/+", regex)
    return re.fullmatch("/*" + regex, key) is not None


class _Keep(dict):
    """format_map helper: known values filled in, other placeholders kept as they are."""

    def __missing__(self, name: str) -> str:
        return "{" + name + "}"
