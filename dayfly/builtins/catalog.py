"""The builtins dayfly ships, by name: what each does, its options, and its validator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameter
from . import bundle, compress_config, image_config, notify_config
from .options import Option, Prepared


@dataclass(frozen=True, slots=True)
class Builtin:
    """One prebuilt function: its folder in this package and how it is configured."""

    name: str
    folder: str
    summary: str
    events: str  # the event contract, in one line
    options: tuple[Option, ...]
    prepare: Callable[[Any], Prepared]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "events": self.events,
                "options": [o.to_json() for o in self.options]}


BUILTINS: dict[str, Builtin] = {b.name: b for b in (
    Builtin("image-transform", "image_transform",
            "resize, crop, rotate, flip, watermark and convert images (Pillow)",
            "S3 event (bucket trigger); {\"bucket\", \"key\"}; {\"image_base64\"} → inline result",
            image_config.OPTIONS, image_config.prepare),
    Builtin("notify", "notify",
            "webhooks (signed JSON or CloudEvents) and email for bucket, table and other events",
            "S3 event; table change batch (DynamoDB Streams shape); destination record; any "
            "JSON (direct call)", notify_config.OPTIONS, notify_config.prepare),
    Builtin("compress", "compress",
            "gzip, zstd, zip and tar(.gz/.zst) of objects or prefixes, and safe extraction",
            "S3 event; {\"bucket\", \"key\"}; {\"bucket\", \"prefix\"} (compress a prefix)",
            compress_config.OPTIONS, compress_config.prepare),
)}


def get(name: str) -> Builtin:
    """The builtin of that name; InvalidParameter listing the known ones otherwise."""
    b = BUILTINS.get(name)
    if b is None:
        raise InvalidParameter(f"no builtin named {name!r} (builtins: {', '.join(BUILTINS)})")
    return b


def package(name: str, config: Any) -> tuple[bytes, Prepared]:
    """Validate a configuration and build the builtin's bundle for it."""
    b = get(name)
    prepared = b.prepare(config if config is not None else {})
    return bundle.build(b.folder, prepared), prepared
