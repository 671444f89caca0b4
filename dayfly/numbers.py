"""Integers in requests (query parameters, headers, paths, XML, manifests): ASCII decimal
digits only.

`str.isdigit` accepts '²' and other digits `int` refuses, and `int` refuses more than 4,300
digits: both were 500s. Whatever `uint` returns None for (or `digits` says no to) is the
caller's precise 400.
"""

from __future__ import annotations

from typing import TypeGuard


def uint(raw: str, max_digits: int = 19) -> int | None:
    """`raw` as a non-negative integer of at most `max_digits` ASCII digits, else None."""
    if not raw or len(raw) > max_digits or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def digits(raw: object, max_digits: int = 19) -> TypeGuard[str]:
    """Whether `int(raw)` is a non-negative integer of at most `max_digits` ASCII digits."""
    return (isinstance(raw, str) and 0 < len(raw) <= max_digits and raw.isascii()
            and raw.isdigit())
