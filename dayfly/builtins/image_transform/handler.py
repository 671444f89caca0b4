"""image-transform: read the object an event names, transform it, write the result."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import transform
from _lib import events, keys, objects, streams

CONFIG: dict[str, Any] = json.loads((Path(__file__).parent / "config.json").read_text())
_s3 = objects.shared  # the object client: the instance's bucket binding, or S3 over HTTP


def _known() -> dict[str, str]:
    fmt = CONFIG["format"]
    return {} if fmt == "same" else {"format": fmt, "ext": transform.FORMATS[fmt][1]}


def _one(ref: events.ObjectRef) -> dict[str, Any]:
    cfg = CONFIG
    target_bucket = cfg["target_bucket"] or ref.bucket
    if (not cfg["allow_same_path"] and ref.bucket == target_bucket
            and keys.own_output(cfg["target_key"], _known(), ref.key)):
        print(f"skipped {ref.bucket}/{ref.key}: it has the shape of this function's own output")
        return {"skipped": f"{ref.bucket}/{ref.key}"}
    if ref.size is not None and ref.size > cfg["max_input_bytes"]:
        raise transform.ImageRefused(f"{ref.bucket}/{ref.key} is {ref.size} bytes, over "
                                     f"max_input_bytes={cfg['max_input_bytes']}")
    t0 = time.perf_counter()
    with _s3().get(ref.bucket, ref.key) as body:
        if body.size > cfg["max_input_bytes"]:
            raise transform.ImageRefused(f"{ref.bucket}/{ref.key} is {body.size} bytes, over "
                                         f"max_input_bytes={cfg['max_input_bytes']}")
        t1 = time.perf_counter()
        out = transform.run(streams.spooled(body), cfg)  # decodes while the rest arrives
    t2 = time.perf_counter()
    values = {**keys.input_fields(ref.bucket, ref.key), "width": out.width, "height": out.height,
              "format": out.format, "ext": out.ext}
    key = keys.render(cfg["target_key"], values)
    if target_bucket == ref.bucket and key == ref.key and not cfg["allow_same_path"]:
        raise transform.ImageRefused(f"the output key {key} would overwrite the input; set "
                                     "allow_same_path = true to allow it")
    _s3().put(target_bucket, key, out.data, out.content_type,
              {"dayfly-source": f"{ref.bucket}/{ref.key}"})
    t3 = time.perf_counter()
    print(f"{ref.bucket}/{ref.key} ({body.size} B) -> {target_bucket}/{key} "
          f"({out.width}x{out.height} {out.format}, {len(out.data)} B); get "
          f"{(t1 - t0) * 1000:.1f} ms, transform {(t2 - t1) * 1000:.1f} ms, put "
          f"{(t3 - t2) * 1000:.1f} ms")
    return {"bucket": target_bucket, "key": key, "size": len(out.data), "width": out.width,
            "height": out.height, "format": out.format, "frames": out.frames}


def _inline(event: dict[str, Any]) -> dict[str, Any]:
    try:
        data = base64.b64decode(event["image_base64"], validate=True)
    except (ValueError, TypeError):
        raise events.BadRequest("image_base64 must be base64-encoded image bytes") from None
    out = transform.run(data, CONFIG)
    return {"image_base64": base64.b64encode(out.data).decode(), "format": out.format,
            "content_type": out.content_type, "width": out.width, "height": out.height,
            "frames": out.frames}


def handler(event: Any, context: Any) -> dict[str, Any]:
    if isinstance(event, dict) and "image_base64" in event:
        return _inline(event)
    refs, skipped = events.objects(event)
    if refs:
        _s3(context)
    results = [_one(ref) for ref in refs]
    return {"written": [r for r in results if "key" in r],
            "skipped": skipped + [r["skipped"] for r in results if "skipped" in r]}
