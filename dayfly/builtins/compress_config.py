"""compress's options, validated at deploy."""

from __future__ import annotations

from typing import Any

from ._lib import keys
from .options import Checker, Option, Prepared, limit_options

NAME = "compress"
WHERE = f"builtin:{NAME}"
FORMATS = ("gzip", "zstd", "zip", "tar", "tar.gz", "tar.zst")
SUFFIX = {"gzip": "gz", "zstd": "zst", "zip": "zip", "tar": "tar", "tar.gz": "tar.gz",
          "tar.zst": "tar.zst"}
LEVELS = {"gzip": (1, 9, 6), "zstd": (1, 22, 3), "zip": (0, 9, 6), "tar": (0, 0, 0),
          "tar.gz": (1, 9, 6), "tar.zst": (1, 22, 3)}
KEY_FIELDS = (*keys.INPUT_FIELDS, "ext")
DEFAULT_KEY = "compressed/{key}.{ext}"
DEFAULT_PREFIX = "extracted/{dir}/{stem}/"

OPTIONS = (
    Option("mode", "compress|extract", "compress", "compress objects, or extract archives"),
    Option("format", "|".join(FORMATS) + "|auto", "gzip (extract: auto)",
           "the codec or archive format (auto: from the object's name, extract only)"),
    Option("level", "int", "per format", "compression level (gzip/zip 1-9, zstd 1-22)"),
    Option("source_bucket", "bucket", None, "bucket the inputs come from (read access)", True),
    Option("source_prefix", "key prefix", "", "only keys under this prefix (the trigger filter)"),
    Option("source_suffix", "key suffix", "", "only keys ending so (the trigger filter)"),
    Option("target_bucket", "bucket", "= source_bucket", "bucket the results go to (write)"),
    Option("target_key", "key pattern", DEFAULT_KEY,
           "compress: output key; " + ", ".join("{" + f + "}" for f in KEY_FIELDS)),
    Option("target_prefix", "key pattern", DEFAULT_PREFIX,
           "extract: where members go (a .gz/.zst stream: this key without the '/')"),
    Option("max_total_bytes", "int", 1 << 30, "extract: refuse archives expanding past this"),
    Option("max_ratio", "number", 200, "extract: refuse expanding more than this many times"),
    Option("max_entries", "int", 10000, "extract: refuse archives with more entries"),
    Option("part_size_mb", "int 5-512", 8, "multipart upload part size (memory per stream)"),
    Option("allow_same_path", "bool", False, "allow outputs inside the trigger's own path"),
    *limit_options(256, 300),
)


def prepare(raw: Any) -> Prepared:
    """Validate compress's options; the config.json, manifest and trigger."""
    c = Checker(WHERE, raw, [o.name for o in OPTIONS])
    mode = c.text("mode", "compress", ("compress", "extract"))
    if mode == "compress":
        fmt = c.text("format", "gzip", FORMATS)
    else:
        fmt = c.text("format", "auto", (*FORMATS, "auto"))
    lo, hi, default = LEVELS.get(fmt, (0, 22, 0))
    source = c.bucket("source_bucket")
    cfg: dict[str, Any] = {
        "mode": mode, "format": fmt,
        "level": c.integer("level", default, lo, hi) if mode == "compress" else default,
        "source_bucket": source, "source_prefix": c.prefix("source_prefix"),
        "source_suffix": c.prefix("source_suffix"),
        "target_bucket": c.bucket("target_bucket", None) or source,
        "target_key": c.pattern("target_key", DEFAULT_KEY, KEY_FIELDS),
        "target_prefix": c.pattern("target_prefix", DEFAULT_PREFIX, keys.INPUT_FIELDS),
        "max_total_bytes": c.integer("max_total_bytes", 1 << 30, 1, 1 << 40),
        "max_ratio": c.number("max_ratio", 200, 1, 1e6),
        "max_entries": c.integer("max_entries", 10000, 1, 1_000_000),
        "part_size_mb": c.integer("part_size_mb", 8, 5, 512),
        "allow_same_path": c.flag("allow_same_path", False),
    }
    if mode == "compress" and "target_prefix" in c.raw:
        raise c.fail("target_prefix", "is for mode = \"extract\" (use target_key)")
    if mode == "extract" and ("target_key" in c.raw or "level" in c.raw):
        raise c.fail("target_key" if "target_key" in c.raw else "level",
                     "is for mode = \"compress\"" + (" (use target_prefix)"
                                                     if "target_key" in c.raw else ""))
    if mode == "compress":
        pattern, known = cfg["target_key"], {"ext": SUFFIX[fmt]}
    else:  # members can have any name: only the prefix can keep them out of the trigger's way
        pattern, known = cfg["target_prefix"].rstrip("/") + "/{key}", {}
    if (cfg["target_bucket"] == source and not cfg["allow_same_path"]
            and keys.may_overlap(pattern, known, cfg["source_prefix"], cfg["source_suffix"])):
        option = "target_key" if mode == "compress" else "target_prefix"
        raise c.fail(option, f"{cfg[option]!r} in bucket {source} can match the trigger's own "
                             f"filter (prefix {cfg['source_prefix']!r}, suffix "
                             f"{cfg['source_suffix']!r}): the function would trigger itself. "
                             "Choose another target bucket or key, narrow source_prefix, or set "
                             "allow_same_path = true")
    memory = 256 + 3 * cfg["part_size_mb"]  # parts in flight plus the one being filled
    manifest = {"buckets": [f"{source}:read", f"{cfg['target_bucket']}:write"],
                "network": [], "secrets": [], **c.limits(memory, 300)}
    trigger = {"bucket": source, "prefix": cfg["source_prefix"], "suffix": cfg["source_suffix"]}
    return Prepared(cfg, manifest, trigger)
