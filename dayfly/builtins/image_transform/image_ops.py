"""The image operations (resize, thumbnail, crop, rotate, flip, orientation, watermark)."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageColor, ImageDraw, ImageFont, ImageOps

GRAVITY = {"center": (0.5, 0.5), "north": (0.5, 0), "south": (0.5, 1), "east": (1, 0.5),
           "west": (0, 0.5), "northeast": (1, 0), "northwest": (0, 0), "southeast": (1, 1),
           "southwest": (0, 1)}


class OperationError(ValueError):
    """An operation cannot apply to this image (a crop box outside it)."""


def _resize(img: Image.Image, op: dict[str, Any], background: str) -> Image.Image:
    w, h = img.size
    bw, bh = op.get("width"), op.get("height")
    fit, up = op.get("fit", "contain"), op.get("upscale", False)
    if not bw or not bh:  # one side given: keep the aspect ratio
        if bw:
            s = bw / w
        elif bh:
            s = bh / h
        else:  # the config requires one (image_config)
            raise OperationError("resize needs a width or a height")
        s = s if up else min(s, 1.0)
        return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS,
                          reducing_gap=3.0)
    if fit == "exact":
        size = (bw, bh) if up else (min(bw, w), min(bh, h))
        return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if fit == "cover":
        s = max(bw / w, bh / h)
        s = s if up else min(s, 1.0)
        cw, ch = min(w, round(bw / s)), min(h, round(bh / s))  # the box, in source pixels
        left, top = (w - cw) // 2, (h - ch) // 2
        size = (max(1, min(bw, round(cw * s))), max(1, min(bh, round(ch * s))))
        return img.resize(size, Image.Resampling.LANCZOS, box=(left, top, left + cw, top + ch),
                          reducing_gap=3.0)
    s = min(bw / w, bh / h)
    s = s if up else min(s, 1.0)
    out = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS,
                     reducing_gap=3.0)
    if fit == "fill":  # letterbox onto the whole box
        mode = "RGBA" if "A" in out.mode else "RGB"
        canvas = Image.new(mode, (bw, bh), background)
        canvas.paste(out, ((bw - out.width) // 2, (bh - out.height) // 2))
        return canvas
    return out


def _crop(img: Image.Image, op: dict[str, Any]) -> Image.Image:
    w, h = img.size
    if "box" in op:
        left, top, right, bottom = op["box"]
        box = (max(0, left), max(0, top), min(w, right), min(h, bottom))
    else:
        cw, ch = min(w, op.get("width") or w), min(h, op.get("height") or h)
        gx, gy = GRAVITY[op.get("gravity", "center")]
        left, top = round((w - cw) * gx), round((h - ch) * gy)
        box = (left, top, left + cw, top + ch)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise OperationError(f"crop box {op.get('box')} lies outside the {w}x{h} image")
    return img.crop(box)


def _rotate(img: Image.Image, op: dict[str, Any], background: str) -> Image.Image:
    deg = op["degrees"] % 360  # clockwise
    fixed = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
             270: Image.Transpose.ROTATE_90}
    if deg == 0:
        return img
    if deg in fixed:
        return img.transpose(fixed[deg])
    fill = None if "A" in img.mode else background
    return img.rotate(-deg, Image.Resampling.BICUBIC, expand=op.get("expand", True), fillcolor=fill)


def _watermark(img: Image.Image, op: dict[str, Any]) -> Image.Image:
    base = img.convert("RGBA")
    size = op.get("size") or max(10, min(base.size) // 20)
    font = ImageFont.load_default(size)
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), op["text"], font=font)
    tw, th = right - left, bottom - top
    margin = op.get("margin", size // 2)
    gx, gy = GRAVITY[op.get("gravity", "southeast")]
    x = margin + round((base.width - tw - 2 * margin) * gx) - left
    y = margin + round((base.height - th - 2 * margin) * gy) - top
    rgb = ImageColor.getrgb(op.get("color", "#ffffff"))[:3]
    draw.text((x, y), op["text"], font=font, fill=(*rgb, round(255 * op.get("opacity", 0.5))))
    out = Image.alpha_composite(base, layer)
    return out if "A" in img.mode else out.convert("RGB")


def apply(img: Image.Image, ops: list[dict[str, Any]], background: str) -> Image.Image:
    """Every operation, in the configured order."""
    for op in ops:
        kind = op["op"]
        if kind == "auto_orient":
            img = ImageOps.exif_transpose(img)
        elif kind == "resize":
            img = _resize(img, op, background)
        elif kind == "thumbnail":
            img = img.copy() if img.readonly else img
            img.thumbnail((op.get("width") or img.width, op.get("height") or img.height),
                          Image.Resampling.LANCZOS, reducing_gap=2.0)
        elif kind == "crop":
            img = _crop(img, op)
        elif kind == "rotate":
            img = _rotate(img, op, background)
        elif kind == "flip":
            img = ImageOps.mirror(img) if op["direction"] == "horizontal" else ImageOps.flip(img)
        elif kind == "watermark":
            img = _watermark(img, op)
    return img
