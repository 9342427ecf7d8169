"""Poison stays local on the read side (issue 9): one client's bad stored row never makes a
whole answer fail (followup's work list, client 360 and quality measures read through it).

A row can be bad in two ways, and each is caught where it would break:

- **an instant Python cannot hold** (``-infinity``, year 10000, ...): asyncpg would fail the
  whole fetch (or hand back a naive ``datetime.max`` that breaks every comparison). Queries
  therefore select their instants through :func:`select_list`, which reads an out-of-range
  instant as NULL and flags the row; :func:`readable` drops flagged rows.
- **a value the code cannot decode** (an unknown code, a score out of range, an undecodable
  sealed value): :func:`decode_rows` decodes row by row and skips the row that fails.

A skipped row is logged (the query's name and the kind of problem: never a value of the row,
which may be personal) and counted in ``branchline_unreadable_rows_total{query}``,
so an operator finds it and repairs or replays it; every other row is answered as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
from prometheus_client import Counter
from pydantic import ValidationError

log = logging.getLogger(__name__)

T = TypeVar("T")

UNREADABLE_ROWS = Counter(
    "branchline_unreadable_rows_total",
    "Stored rows a read skipped because they cannot be decoded (issue 9: poison stays local)",
    ["query"],
)

UNREADABLE = "row_unreadable"
"""The flag column :func:`select_list` adds."""

# A margin of a year inside what Python's datetime holds (years 1 to 9999), so that the
# arithmetic on a readable instant (deadlines, windows) cannot overflow either.
_EARLIEST = "'0002-01-01 00:00:00+00'::timestamptz"
_LATEST = "'9998-01-01 00:00:00+00'::timestamptz"

_DECODE_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError, AttributeError)
"""What decoding a bad value raises (pydantic's ValidationError is a ValueError)."""


def _in_range(column: str) -> str:
    return f"({column} >= {_EARLIEST} AND {column} < {_LATEST})"


def select_list(columns: Sequence[str], *, instants: Collection[str]) -> str:
    """``columns`` for a SELECT, each of ``instants`` read as NULL when outside what Python
    represents, plus the ``row_unreadable`` flag (true when any instant was out of range)."""
    parts = [
        f"CASE WHEN {_in_range(c)} THEN {c} END AS {c}" if c in instants else c for c in columns
    ]
    checks = [f"({c} IS NOT NULL AND NOT {_in_range(c)})" for c in columns if c in instants]
    parts.append(f"({' OR '.join(checks) or 'false'}) AS {UNREADABLE}")
    return ", ".join(parts)


def skipped(query: str, problem: str) -> None:
    """Count and log one skipped row (no value of the row is logged: it may be personal)."""
    UNREADABLE_ROWS.labels(query=query).inc()
    log.warning(
        "unreadable stored row skipped",
        extra={"query": query, "problem": problem},
    )


def readable(rows: Iterable[Mapping[str, Any]], *, query: str) -> list[dict[str, Any]]:
    """The rows of a :func:`select_list` query whose instants are all readable (the flag
    removed); the others are skipped, logged and counted."""
    kept: list[dict[str, Any]] = []
    for row in rows:
        values = dict(row)
        if values.pop(UNREADABLE, False):
            skipped(query, "an instant outside the representable range")
            continue
        kept.append(values)
    return kept


def _problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        # field names only: pydantic's messages quote the input, which may be personal
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})
        return f"invalid fields: {', '.join(fields)}"
    return type(error).__name__


def decode_row(row: Any, decode: Callable[[Any], T], *, query: str) -> T | None:
    """``decode(row)``, or None (skipped, logged, counted) when the row cannot be decoded. A
    mapping row is decoded as a dict (and skipped if :func:`select_list` flagged it); any other
    record (a dataclass) as it is."""
    values = row
    if isinstance(row, Mapping | asyncpg.Record):
        values = dict(row)
        if values.pop(UNREADABLE, False):
            skipped(query, "an instant outside the representable range")
            return None
    try:
        return decode(values)
    except _DECODE_ERRORS as error:
        skipped(query, _problem(error))
        return None


def decode_rows(rows: Iterable[Any], decode: Callable[[Any], T], *, query: str) -> list[T]:
    """Every row ``decode`` accepts, in order; a row it cannot decode is skipped, logged and
    counted, and the others are answered as usual."""
    decoded: list[T] = []
    for row in rows:
        item = decode_row(row, decode, query=query)
        if item is not None:
            decoded.append(item)
    return decoded
