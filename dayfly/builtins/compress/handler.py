"""compress: gzip/zstd/zip/tar of one object or of a prefix, or the reverse (extract)."""

from __future__ import annotations

import json
import posixpath
import time
from pathlib import Path
from typing import Any

import pack
import stream_codecs
import unpack
from _lib import events, keys, objects, streams
from guards import ArchiveRefused, Budget

CONFIG: dict[str, Any] = json.loads((Path(__file__).parent / "config.json").read_text())
_s3 = objects.shared  # the object client: the instance's bucket binding, or S3 over HTTP


def _known() -> dict[str, str]:
    fmt = CONFIG["format"]
    return {"ext": stream_codecs.SUFFIX[fmt]} if fmt != "auto" else {}


def _own_output(bucket: str, key: str) -> bool:
    if CONFIG["allow_same_path"] or bucket != (CONFIG["target_bucket"] or bucket):
        return False
    pattern = CONFIG["target_key"] if CONFIG["mode"] == "compress" else \
        CONFIG["target_prefix"].rstrip("/") + "/{key}"
    return keys.own_output(pattern, _known(), key)


def _compress(bucket: str, key: str, members: list[tuple[str, str, int]],
              fields: dict[str, Any]) -> dict[str, Any]:
    fmt, level = CONFIG["format"], CONFIG["level"]
    target = CONFIG["target_bucket"] or bucket
    out_key = keys.render(CONFIG["target_key"], {**fields, "ext": stream_codecs.SUFFIX[fmt]})
    if target == bucket and any(out_key == m[0] for m in members):
        raise ArchiveRefused(f"the output {out_key} would overwrite an input")
    t0 = time.perf_counter()
    with streams.writer(_s3(), target, out_key, stream_codecs.CONTENT_TYPE[fmt],
                        CONFIG["part_size_mb"] * 1024 * 1024) as w:
        if fmt in ("gzip", "zstd"):
            read = pack.compress_one(_s3(), bucket, key, fmt, level, w)
        else:
            read = pack.archive(_s3(), bucket, members, fmt, level, w)
    dt = time.perf_counter() - t0
    print(f"{bucket}/{key} ({read} B, {len(members)} object(s)) -> {target}/{out_key} "
          f"({w.size} B) in {dt * 1000:.0f} ms, {read / max(dt, 1e-9) / 1e6:.1f} MB/s in")
    return {"bucket": target, "key": out_key, "size": w.size, "input_bytes": read,
            "objects": len(members), "seconds": round(dt, 4)}


def _extract(ref: events.ObjectRef) -> list[dict[str, Any]]:
    fmt = CONFIG["format"] if CONFIG["format"] != "auto" else stream_codecs.detect(ref.key)
    if fmt is None:
        raise ArchiveRefused(f"{ref.key}: cannot tell the archive format from its name "
                             "(configure format)")
    size = ref.size
    if size is None:
        head = _s3().head(ref.bucket, ref.key)
        if head is None:
            raise ArchiveRefused(f"{ref.bucket}/{ref.key} does not exist")
        size = head["size"]
    target = CONFIG["target_bucket"] or ref.bucket
    fields = keys.input_fields(ref.bucket, ref.key)
    prefix = keys.render(CONFIG["target_prefix"], fields).rstrip("/") + "/"
    ex = unpack.Extraction(_s3(), ref.bucket, ref.key, size, target, prefix,
                           Budget(CONFIG, size), CONFIG["part_size_mb"] * 1024 * 1024)
    t0 = time.perf_counter()
    unpack.extract(ex, fmt, prefix.rstrip("/"))
    dt = time.perf_counter() - t0
    print(f"{ref.bucket}/{ref.key} ({size} B {fmt}) -> {len(ex.written)} object(s), "
          f"{ex.budget.total} B under {target}/{prefix} in {dt * 1000:.0f} ms")
    return ex.written


def _prefix_request(event: Any) -> list[dict[str, Any]] | None:
    if not (isinstance(event, dict) and isinstance(event.get("bucket"), str)
            and isinstance(event.get("prefix"), str) and "key" not in event):
        return None
    if CONFIG["mode"] != "compress":
        raise events.BadRequest("{\"bucket\", \"prefix\"} requests are for mode = \"compress\"")
    bucket, prefix = event["bucket"], event["prefix"]
    objs = [o for o in _s3().list(bucket, prefix) if not o["key"].endswith("/")]
    if not objs:
        raise ArchiveRefused(f"nothing under {bucket}/{prefix}")
    base = prefix.rstrip("/")
    fields = keys.input_fields(bucket, base or bucket)
    if CONFIG["format"] in ("gzip", "zstd"):  # a stream codec: one output per object
        return [_compress(bucket, o["key"], [(o["key"], o["key"], o["size"])],
                          keys.input_fields(bucket, o["key"])) for o in objs]
    # names inside the archive are relative to the prefix's folder
    folder = prefix if prefix.endswith("/") or "/" not in prefix else \
        posixpath.dirname(prefix) + "/"
    folder = "" if "/" not in prefix else folder
    members = [(o["key"], o["key"][len(folder):], o["size"]) for o in objs]
    return [_compress(bucket, base, members, fields)]


def handler(event: Any, context: Any) -> dict[str, Any]:
    _s3(context)
    done = _prefix_request(event)
    if done is not None:
        return {"written": done, "skipped": []}
    refs, skipped = events.objects(event)
    written: list[dict[str, Any]] = []
    for ref in refs:
        if _own_output(ref.bucket, ref.key):
            skipped.append(f"{ref.bucket}/{ref.key}: this function's own output")
            continue
        if CONFIG["mode"] == "extract":
            written += _extract(ref)
        else:
            size = ref.size if ref.size is not None else (_s3().head(ref.bucket, ref.key)
                                                          or {}).get("size", 0)
            written.append(_compress(ref.bucket, ref.key,
                                     [(ref.key, posixpath.basename(ref.key), size)],
                                     keys.input_fields(ref.bucket, ref.key)))
    return {"written": written, "skipped": skipped}
