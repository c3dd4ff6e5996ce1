"""Long IN lists in pieces: SQLite allows a bounded number of bound parameters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

__all__ = ["chunks"]

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = 400) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
