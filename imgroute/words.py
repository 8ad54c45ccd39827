"""How counts read in messages: "1 row", "2 rows", never "1 rows" or "2 row(s)"."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular or plural (`plural` where adding an s is wrong)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {plural or noun + 's'}"
