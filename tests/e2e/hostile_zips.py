"""Hostile zips, built by hand: zipfile writes a good archive, then its headers are patched."""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
import zlib

HANDLER = b"def handler(event, context):\n    return {'ok': True}\n"

# field offsets in a central directory header (PK\1\2) and in a local header (PK\3\4)
CENTRAL = {"flags": (8, "H"), "method": (10, "H"), "crc": (16, "I"), "csize": (20, "I"),
           "size": (24, "I"), "attr": (38, "I"), "offset": (42, "I")}
LOCAL = {"flags": (6, "H"), "method": (8, "H"), "crc": (14, "I"), "csize": (18, "I"),
         "size": (22, "I")}


def build(entries: list[tuple[str | zipfile.ZipInfo, bytes]],
          method: int = zipfile.ZIP_DEFLATED) -> bytearray:
    """A well-formed zip of (name or ZipInfo, content), duplicates allowed."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", method) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": the point of some of these
        for name, content in entries:
            zf.writestr(name, content)
    return bytearray(buf.getvalue())


def _headers(data: bytearray, sig: bytes, name_len_at: int, name_at: int, name: str) -> list[int]:
    out, i = [], data.find(sig)
    while i >= 0:
        n = struct.unpack_from("<H", data, i + name_len_at)[0]
        if bytes(data[i + name_at:i + name_at + n]) == name.encode():
            out.append(i)
        i = data.find(sig, i + 4)
    return out


def patch(data: bytearray, name: str, *, local: bool = False, **fields: int) -> bytearray:
    """Set header fields of the entry `name` in the central directory (and the local header)."""
    for at in _headers(data, b"PK\x01\x02", 28, 46, name):
        for f, v in fields.items():
            off, fmt = CENTRAL[f]
            struct.pack_into("<" + fmt, data, at + off, v)
    if local:
        for at in _headers(data, b"PK\x03\x04", 26, 30, name):
            for f, v in fields.items():
                if f in LOCAL:
                    off, fmt = LOCAL[f]
                    struct.pack_into("<" + fmt, data, at + off, v)
    return data


def bad_crc() -> bytes:
    data = build([("handler.py", HANDLER)], zipfile.ZIP_STORED)
    i = data.index(b"return")
    data[i] ^= 0x20  # one flipped bit in the stored content
    return bytes(data)


def dir_and_file() -> bytes:
    return bytes(build([("handler.py", HANDLER), ("d/", b""), ("d", b"x")]))


def file_and_child() -> bytes:
    return bytes(build([("handler.py", HANDLER), ("d", b"x"), ("d/e.py", b"y = 1\n")]))


def duplicate() -> bytes:
    return bytes(build([("handler.py", HANDLER), ("handler.py", b"x = 1\n")]))


def duplicate_spelled_twice() -> bytes:
    return bytes(build([("handler.py", HANDLER), ("pkg/a.py", b""), ("pkg//a.py", b"")]))


def size_too_small() -> bytes:
    data = build([("handler.py", HANDLER * 50)])
    return bytes(patch(data, "handler.py", size=10))


def size_too_large() -> bytes:
    data = build([("handler.py", HANDLER * 50)])
    return bytes(patch(data, "handler.py", size=10_000_000))


def compressed_size_past_the_end() -> bytes:
    data = build([("handler.py", HANDLER * 50)])
    return bytes(patch(data, "handler.py", csize=5_000_000))


def overlapping() -> bytes:
    """Two central entries sharing one local entry (how small zips unpack to gigabytes)."""
    data = build([("handler.py", HANDLER), ("other.py", HANDLER)])
    first = _headers(data, b"PK\x01\x02", 28, 46, "handler.py")[0]
    offset = struct.unpack_from("<I", data, first + 42)[0]
    return bytes(patch(data, "other.py", offset=offset))


def encrypted() -> bytes:
    return bytes(patch(build([("handler.py", HANDLER)]), "handler.py", local=True, flags=0x1))


def unknown_method() -> bytes:
    return bytes(patch(build([("handler.py", HANDLER)]), "handler.py", local=True, method=99))


def truncated_stream() -> bytes:
    """The deflate stream stops early: both headers say its first 20 bytes are all of it."""
    data = build([("handler.py", HANDLER * 50)])
    return bytes(patch(data, "handler.py", local=True, csize=20))


def garbage_stream() -> bytes:
    data = build([("handler.py", HANDLER * 50)])
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    full = raw.compress(HANDLER * 50) + raw.flush()
    i = data.index(full)
    data[i:i + len(full)] = b"\xff" * len(full)
    return bytes(data)


def long_name() -> bytes:
    return bytes(build([("handler.py", HANDLER), ("p/" + "x" * 300 + ".py", b"")]))


def backslash_name() -> bytes:
    return bytes(build([("handler.py", HANDLER), ("pkg\\mod.py", b"")]))


def control_char_name() -> bytes:
    return bytes(build([("handler.py", HANDLER), ("evil\n.py", b"")]))


def fifo_entry() -> bytes:
    info = zipfile.ZipInfo("pipe")
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return bytes(build([("handler.py", HANDLER), (info, b"")]))


CASES = {f.__name__: f for f in (
    bad_crc, dir_and_file, file_and_child, duplicate, duplicate_spelled_twice, size_too_small,
    size_too_large, compressed_size_past_the_end, overlapping, encrypted, unknown_method,
    truncated_stream, garbage_stream, long_name, backslash_name, control_char_name, fifo_entry)}


def zeros_bomb(total: int, parts: int = 1, declared: int | None = None) -> bytes:
    """`parts` entries of zeros adding up to `total` bytes, deflated (about 1 KB per MB);
    with `declared`, each entry's headers claim that size instead of the real one."""
    buf = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", HANDLER)
        for n in range(parts):
            with zf.open(f"zeros{n}.bin", "w") as f:
                left = total // parts
                while left > 0:
                    f.write(chunk[:min(left, len(chunk))])
                    left -= len(chunk)
    data = bytearray(buf.getvalue())
    if declared is not None:
        for n in range(parts):
            patch(data, f"zeros{n}.bin", local=True, size=declared)
    return bytes(data)
