"""The image pipeline: a guarded decode, the configured operations in order, the encoding."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

from image_ops import OperationError, apply
from PIL import Image, ImageSequence, UnidentifiedImageError

FORMATS = {"jpeg": ("JPEG", "jpg", "image/jpeg"), "png": ("PNG", "png", "image/png"),
           "webp": ("WEBP", "webp", "image/webp"), "avif": ("AVIF", "avif", "image/avif"),
           "gif": ("GIF", "gif", "image/gif")}
ANIMATED_OUT = ("webp", "gif", "png")
_ORIENT_SWAPS = (5, 6, 7, 8)  # EXIF orientations that exchange width and height


class ImageError(Exception):
    """The input is not an image this function can read (corrupt, truncated, unsupported)."""


class ImageRefused(ImageError):
    """The input breaks a limit (pixels, bytes, frames, animation)."""


@dataclass(frozen=True, slots=True)
class Output:
    data: bytes
    format: str  # "webp", ...
    ext: str
    content_type: str
    width: int
    height: int
    frames: int


def open_guarded(source: bytes | BinaryIO, cfg: dict[str, Any]) -> Image.Image:
    """Open (header only) and check dimensions and frames before anything is decoded. A
    seekable stream may still be arriving: decoding then overlaps the transfer."""
    size = len(source) if isinstance(source, bytes) else source.size  # type: ignore[attr-defined]
    if size > cfg["max_input_bytes"]:
        raise ImageRefused(f"input is {size} bytes, over max_input_bytes="
                           f"{cfg['max_input_bytes']}")
    Image.MAX_IMAGE_PIXELS = cfg["max_pixels"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRefused(f"over max_pixels={cfg['max_pixels']}, refused as a decompression "
                           f"bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image this function can read (unknown format or corrupt "
                         "header)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt image header: {exc}") from None
    w, h = img.size
    if w * h > cfg["max_pixels"]:  # explicit, whatever Pillow's own checks do
        raise ImageRefused(f"image is {w}x{h} = {w * h} pixels, over max_pixels="
                           f"{cfg['max_pixels']} (a decompression bomb?)")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        if cfg["animated"] == "refuse":
            raise ImageRefused(f"animated image ({frames} frames) refused (animated = "
                               "\"refuse\")")
        if cfg["animated"] == "all" and frames > cfg["max_frames"]:
            raise ImageRefused(f"animated image has {frames} frames, over max_frames="
                               f"{cfg['max_frames']}")
    return img


def _draft(img: Image.Image, ops: list[dict[str, Any]]) -> None:
    """Let the JPEG decoder scale down (1/2 … 1/8) while decoding when the first geometric
    operation is a downscale: never below what that operation needs."""
    if img.format != "JPEG":
        return
    swap = False
    for op in ops:
        if op["op"] == "auto_orient":
            swap = img.getexif().get(0x0112, 1) in _ORIENT_SWAPS
            continue
        if op["op"] not in ("resize", "thumbnail") or op.get("fit") == "exact":
            return
        w, h = img.size
        bw, bh = (op.get("height"), op.get("width")) if swap else (op.get("width"), op.get("height"))
        sx = bw / w if bw else None
        sy = bh / h if bh else None
        scales = [s for s in (sx, sy) if s is not None]
        s = max(scales) if op.get("fit") == "cover" else min(scales)
        if s < 1:
            img.draft(img.mode, (max(1, int(w * s)), max(1, int(h * s))))
        return


def _normal_mode(img: Image.Image) -> Image.Image:
    if img.mode in ("RGB", "RGBA", "L", "LA"):
        return img
    alpha = img.mode in ("P", "PA", "RGBa", "La") and ("transparency" in img.info or "A" in img.mode)
    return img.convert("RGBA" if alpha or img.mode.endswith("A") else "RGB")


def _flatten(img: Image.Image, background: str) -> Image.Image:
    """JPEG has no alpha: composite onto the background colour."""
    if img.mode in ("RGB", "L"):
        return img
    rgba = img.convert("RGBA")
    out = Image.new("RGB", img.size, background)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _encode(frames: list[Image.Image], fmt: str, cfg: dict[str, Any],
            info: dict[str | tuple[int, int], Any], durations: list[int]) -> bytes:
    name = FORMATS[fmt][0]
    kw: dict[str, Any] = {}
    if fmt in ("jpeg", "webp", "avif"):
        kw["quality"] = cfg["quality"]
    if fmt == "webp":
        kw.update(method=cfg.get("webp_method", 4), lossless=cfg.get("lossless", False))
    if fmt == "jpeg":
        frames = [_flatten(f, cfg["background"]) for f in frames]
    if cfg["strip_metadata"]:
        for f in frames:
            f.info = {}
    else:
        exif = frames[0].getexif()
        kw.update(exif=exif.tobytes() if exif else b"")
        if info.get("icc_profile"):
            kw["icc_profile"] = info["icc_profile"]
    if len(frames) > 1:
        kw.update(save_all=True, append_images=frames[1:], duration=durations,
                  loop=info.get("loop", 0))
    buf = io.BytesIO()
    frames[0].save(buf, name, **kw)
    return buf.getvalue()


def run(source: bytes | BinaryIO, cfg: dict[str, Any]) -> Output:
    """The whole transformation of one input; ImageError (or ImageRefused) when it cannot be."""
    img = open_guarded(source, cfg)
    fmt = cfg["format"]
    if fmt == "same":
        fmt = (img.format or "").lower()
        fmt = fmt if fmt in FORMATS else "png"
    animated = getattr(img, "n_frames", 1) > 1 and cfg["animated"] == "all"
    ops, bg = cfg["operations"], cfg["background"]
    durations: list[int] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if animated:
                frames = []
                for frame in ImageSequence.Iterator(img):
                    durations.append(int(frame.info.get("duration", 100)))
                    frames.append(apply(frame.convert("RGBA"), ops, bg))
            else:
                _draft(img, ops)
                img.load()
                frames = [apply(_normal_mode(img), ops, bg)]
            out = _encode(frames, fmt, cfg, img.info, durations)
    except OperationError as exc:
        raise ImageError(str(exc)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRefused(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageError(f"corrupt or unsupported image data: {exc}") from None
    _, ext, ctype = FORMATS[fmt]
    return Output(out, fmt, ext, ctype, frames[0].width, frames[0].height, len(frames))
