"""Pieces of statements built from what a request asks for, its values always bound (#12).

A read whose filters are optional is written with only the conditions a request gives, so
that a generic plan (asyncpg prepares every statement) sees exactly the conditions in force
and can read the index that serves them; values never enter the statement's text.
"""

from __future__ import annotations

from typing import Any


class Placeholders:
    """The values of a statement being built: each value given becomes the next ``$n``."""

    def __init__(self, first: int = 1) -> None:
        self.values: list[Any] = []
        self._first = first

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${self._first + len(self.values) - 1}"


def prefix_range(prefix: str) -> tuple[str, str]:
    """The byte range ``[low, high)`` holding exactly the strings that start with ``prefix``:
    ``high`` is ``prefix`` with its last character the next one. UTF-8 orders bytes as code
    points, so no string inside lacks the prefix; the last character must be printable ASCII,
    so that the next one is one byte too. Compared with the byte-order operators (``~>=~``,
    ``~<~``), which a ``text_pattern_ops`` index serves in any collation and on a generic plan,
    where a bound ``LIKE`` pattern is read whole."""
    if not prefix or not " " <= prefix[-1] < "\x7f":
        raise ValueError(f"a prefix ends with a printable ASCII character: {prefix!r}")
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
