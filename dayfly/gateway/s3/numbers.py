"""Integers in S3 requests (query parameters, headers, XML): ASCII decimal digits only.

`str.isdigit` accepts '²' and other digits `int` refuses, and `int` refuses more than 4,300
digits: both were 500s. Whatever `uint` returns None for is the caller's precise 400.
"""

from __future__ import annotations


def uint(raw: str, max_digits: int = 19) -> int | None:
    """`raw` as a non-negative integer of at most `max_digits` ASCII digits, else None."""
    if not raw or len(raw) > max_digits or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)
