"""image-transform's options, validated at deploy (host side: no Pillow needed here)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidParameter
from ._lib import keys
from .options import Checker, Option, Prepared, limit_options

NAME = "image-transform"
WHERE = f"builtin:{NAME}"
FORMATS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"}
FITS = ("contain", "cover", "fill", "exact")
GRAVITIES = ("center", "north", "south", "east", "west", "northeast", "northwest", "southeast",
             "southwest")
COLOR_RE = re.compile(r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|#[0-9a-fA-F]{8}|[a-z]{3,20})$")
KEY_FIELDS = (*keys.INPUT_FIELDS, "width", "height", "format", "ext")
MAX_SIDE = 65535
OP_KEYS = {
    "auto_orient": (), "resize": ("width", "height", "fit", "upscale"),
    "thumbnail": ("width", "height"), "crop": ("box", "width", "height", "gravity"),
    "rotate": ("degrees", "expand"), "flip": ("direction",),
    "watermark": ("text", "gravity", "opacity", "size", "color", "margin"),
}

# A target bucket of its own holds only results, so they need no folder; in the source bucket
# they go under thumbs/, out of the way of the originals (and of the trigger's filter)
DEFAULT_KEY = "{stem}-{width}x{height}.{ext}"
SAME_BUCKET_KEY = "thumbs/" + DEFAULT_KEY

OPTIONS = (
    Option("source_bucket", "bucket", None, "bucket the images come from (read access)", True),
    Option("source_prefix", "key prefix", "", "only keys under this prefix (the trigger filter)"),
    Option("source_suffix", "key suffix", "", "only keys ending so (the trigger filter)"),
    Option("target_bucket", "bucket", "= source_bucket", "bucket the results go to (write)"),
    Option("target_key", "key pattern", DEFAULT_KEY,
           f"output key (in the source bucket: {SAME_BUCKET_KEY}); placeholders: "
           + ", ".join("{" + f + "}" for f in KEY_FIELDS)),
    Option("operations", "list of tables", "auto_orient + resize",
           "ops in order: " + ", ".join(OP_KEYS) + " (see docs/builtins.md)"),
    Option("width", "int px", None, "shortcut: resize to this width"),
    Option("height", "int px", None, "shortcut: resize to this height"),
    Option("fit", "|".join(FITS), "contain", "shortcut: how the resize fits width x height"),
    Option("upscale", "bool", False, "shortcut: let the resize enlarge small images"),
    Option("auto_orient", "bool", True, "shortcut: apply the EXIF orientation first"),
    Option("watermark", "text", None, "shortcut: watermark text, bottom right"),
    Option("format", "|".join(FORMATS) + "|same", "webp", "output format"),
    Option("quality", "int 1-100", 80, "JPEG/WebP/AVIF quality"),
    Option("lossless", "bool", False, "lossless WebP"),
    Option("strip_metadata", "bool", True, "drop EXIF, ICC and text metadata"),
    Option("background", "colour", "#ffffff", "fill for letterboxing, rotation, JPEG alpha"),
    Option("animated", "first_frame|all|refuse", "first_frame", "what to do with animations"),
    Option("max_pixels", "int", 40_000_000, "refuse larger images (decompression bombs)"),
    Option("max_input_bytes", "int", 50 * 1024 * 1024, "refuse larger inputs"),
    Option("max_frames", "int", 300, "refuse animations with more frames (animated = all)"),
    Option("allow_same_path", "bool", False, "allow outputs inside the trigger's own path"),
    *limit_options(1024, 60),
)


def _side(c: Checker, name: str) -> Any:
    return c.integer(name, None, 1, MAX_SIDE) if name in c.raw else None


def _op(i: int, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("op") not in OP_KEYS:
        raise InvalidParameter(f"{WHERE}: operations[{i}] must be a table with op = one of "
                               f"{', '.join(OP_KEYS)}, got {raw!r}")
    kind = raw["op"]
    c = Checker(f"{WHERE}: operations[{i}] ({kind})", raw, ["op", *OP_KEYS[kind]])
    op: dict[str, Any] = {"op": kind}
    if kind in ("resize", "thumbnail"):
        op["width"], op["height"] = _side(c, "width"), _side(c, "height")
        if not op["width"] and not op["height"]:
            raise c.fail("width", "or 'height' is required")
        if kind == "resize":
            op["fit"] = c.text("fit", "contain", FITS)
            op["upscale"] = c.flag("upscale", False)
    elif kind == "crop":
        if "box" in raw:
            box = raw["box"]
            if (not isinstance(box, list) or len(box) != 4
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)
                    or box[0] >= box[2] or box[1] >= box[3]):
                raise c.fail("box", f"must be [left, top, right, bottom] with left < right and "
                                    f"top < bottom, got {box!r}")
            op["box"] = box
        else:
            op["width"], op["height"] = _side(c, "width"), _side(c, "height")
            if not op["width"] and not op["height"]:
                raise c.fail("box", "or 'width'/'height' (with 'gravity') is required")
            op["gravity"] = c.text("gravity", "center", GRAVITIES)
    elif kind == "rotate":
        op["degrees"] = c.number("degrees", None, -360, 360)
        op["expand"] = c.flag("expand", True)
    elif kind == "flip":
        op["direction"] = c.text("direction", None, ("horizontal", "vertical"))
    elif kind == "watermark":
        op.update(_watermark(c))
    return op


def _watermark(c: Checker) -> dict[str, Any]:
    text = c.text("text", None)
    if not text or len(text) > 200:
        raise c.fail("text", "must be 1-200 characters")
    color = c.text("color", "#ffffff")
    if not COLOR_RE.match(color):
        raise c.fail("color", f"must be #rgb, #rrggbb or a colour name, got {color!r}")
    return {"text": text, "color": color, "gravity": c.text("gravity", "southeast", GRAVITIES),
            "opacity": c.number("opacity", 0.5, 0, 1), "size": c.integer("size", 0, 0, 2000),
            "margin": c.integer("margin", 8, 0, 10000)}


def _operations(c: Checker) -> list[dict[str, Any]]:
    shortcuts = [k for k in ("width", "height", "fit", "upscale", "watermark") if k in c.raw]
    if "operations" in c.raw:
        if shortcuts:
            raise c.fail(shortcuts[0], "cannot be combined with 'operations' (put a resize "
                                       "operation in the list instead)")
        raw = c.raw["operations"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= 32:
            raise c.fail("operations", "must be a list of 1-32 operation tables")
        return [_op(i, o) for i, o in enumerate(raw)]
    ops: list[dict[str, Any]] = [{"op": "auto_orient"}] if c.flag("auto_orient", True) else []
    if "width" in c.raw or "height" in c.raw:
        ops.append(_op(len(ops), {"op": "resize", **{k: c.raw[k] for k in
                                                     ("width", "height", "fit", "upscale")
                                                     if k in c.raw}}))
    if "watermark" in c.raw:
        ops.append(_op(len(ops), {"op": "watermark", "text": c.raw["watermark"]}))
    return ops


def prepare(raw: Any) -> Prepared:
    """Validate image-transform's options; the config.json, manifest and trigger."""
    c = Checker(WHERE, raw, [o.name for o in OPTIONS])
    source = c.bucket("source_bucket")
    target = c.bucket("target_bucket", None) or source
    cfg: dict[str, Any] = {
        "source_bucket": source, "source_prefix": c.prefix("source_prefix"),
        "source_suffix": c.prefix("source_suffix"),
        "target_bucket": target,
        "target_key": c.pattern("target_key", DEFAULT_KEY if target != source
                                else SAME_BUCKET_KEY, KEY_FIELDS),
        "operations": _operations(c),
        "format": c.text("format", "webp", (*FORMATS, "same")),
        "quality": c.integer("quality", 80, 1, 100), "lossless": c.flag("lossless", False),
        "strip_metadata": c.flag("strip_metadata", True),
        "background": c.text("background", "#ffffff"),
        "animated": c.text("animated", "first_frame", ("first_frame", "all", "refuse")),
        "max_pixels": c.integer("max_pixels", 40_000_000, 1, 1_000_000_000),
        "max_input_bytes": c.integer("max_input_bytes", 50 * 1024 * 1024, 1, 1 << 31),
        "max_frames": c.integer("max_frames", 300, 1, 100_000),
        "allow_same_path": c.flag("allow_same_path", False),
    }
    if not COLOR_RE.match(cfg["background"]):
        raise c.fail("background", f"must be #rgb, #rrggbb or a colour name, got "
                                   f"{cfg['background']!r}")
    if cfg["animated"] == "all" and cfg["format"] not in ("webp", "gif", "png", "same"):
        raise c.fail("animated", f"= \"all\" needs an animated output format (webp, gif, png), "
                                 f"not {cfg['format']}")
    known = {} if cfg["format"] == "same" else {"format": cfg["format"],
                                                 "ext": FORMATS[cfg["format"]]}
    if (cfg["target_bucket"] == source and not cfg["allow_same_path"]
            and keys.may_overlap(cfg["target_key"], known, cfg["source_prefix"],
                                 cfg["source_suffix"])):
        raise c.fail("target_key", f"{cfg['target_key']!r} in bucket {source} can match the "
                                   f"trigger's own filter (prefix {cfg['source_prefix']!r}, "
                                   f"suffix {cfg['source_suffix']!r}): the function would "
                                   "trigger itself. Choose another target_bucket or target_key, "
                                   "narrow source_prefix/source_suffix, or set allow_same_path "
                                   "= true")
    manifest = {"buckets": [f"{source}:read", f"{cfg['target_bucket']}:write"],
                "network": [], "secrets": [], **c.limits(1024, 60)}
    trigger = {"bucket": source, "prefix": cfg["source_prefix"], "suffix": cfg["source_suffix"]}
    return Prepared(cfg, manifest, trigger)
