"""Poison stays local on the read side (issue 9): one client's bad stored row never makes a
whole answer fail (followup's work list, client 360 and quality measures read through it).

A row can be bad in two ways, and each is caught where it would break:

- **an instant Python cannot hold** (``-infinity``, year 10000, ...): asyncpg would fail the
  whole fetch (or hand back a naive ``datetime.max`` that breaks every comparison). Queries
  therefore select their instants through :func:`select_list`, which reads an out-of-range
  instant as NULL and flags the row; :func:`readable` drops flagged rows.
- **a value the code cannot decode** (an unknown code, a score out of range, an undecodable
  sealed value): :func:`decode_rows` decodes row by row and skips the row that fails.

A skipped row is counted in ``branchline_unreadable_rows_total{query}`` (one per row) and
logged: one warning per read (a statement's rows), naming the query, how many rows it skipped,
the kinds of problem with their counts and, where the caller names a key column (a task's
id), the first :data:`IDS_LOGGED` keys; never another value of a row, which may be personal.
So an operator finds them and repairs or replays them; every other row is answered as usual.
(Until #12's Round 34 the warning was one per row: 10-17 us of a walk's ~47 us per skipped
row, ``bench/profile_unreadable_rows.py``.)
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


IDS_LOGGED = 20
"""A read's warning names at most this many of the skipped rows' keys (and the count of all)."""

_OUT_OF_RANGE = "an instant outside the representable range"


class Skips:
    """The rows one read skipped: counted and logged once, by :meth:`report` (#12: one warning
    per read, not per row; the counter still counts rows)."""

    __slots__ = ("count", "ids", "key", "problems")

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self.count = 0
        self.ids: list[str] = []
        self.problems: dict[str, int] = {}

    def add(self, values: Any, problem: str) -> None:
        self.count += 1
        self.problems[problem] = self.problems.get(problem, 0) + 1
        if self.key is not None and len(self.ids) < IDS_LOGGED and isinstance(values, Mapping):
            self.ids.append(str(values.get(self.key)))

    def report(self, query: str) -> None:
        """Count the skipped rows and log one warning for them all (nothing if none)."""
        if not self.count:
            return
        UNREADABLE_ROWS.labels(query=query).inc(self.count)
        log.warning(
            "unreadable stored rows skipped",
            extra={
                "query": query,
                "skipped": self.count,
                "problems": self.problems,
                "ids": self.ids,
            },
        )


def skipped(query: str, problem: str) -> None:
    """Count and log one skipped row (no value of the row is logged: it may be personal)."""
    one = Skips()
    one.add(None, problem)
    one.report(query)


def readable(
    rows: Iterable[Mapping[str, Any]], *, query: str, key: str | None = None
) -> list[dict[str, Any]]:
    """The rows of a :func:`select_list` query whose instants are all readable (the flag
    removed); the others are skipped, counted and logged in one warning (with their ``key``
    column's values, if named)."""
    kept: list[dict[str, Any]] = []
    skips = Skips(key)
    for row in rows:
        values = dict(row)
        if values.pop(UNREADABLE, False):
            skips.add(values, _OUT_OF_RANGE)
            continue
        kept.append(values)
    skips.report(query)
    return kept


def _problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        # field names only: pydantic's messages quote the input, which may be personal
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})
        return f"invalid fields: {', '.join(fields)}"
    return type(error).__name__


def _decoded(row: Any, decode: Callable[[Any], T], skips: Skips) -> T | None:
    """``decode(row)``, or None (added to ``skips``) when the row cannot be decoded. A mapping
    row is decoded as a dict (and skipped if :func:`select_list` flagged it); any other
    record (a dataclass) as it is."""
    values = row
    if isinstance(row, Mapping | asyncpg.Record):
        values = dict(row)
        if values.pop(UNREADABLE, False):
            skips.add(values, _OUT_OF_RANGE)
            return None
    try:
        return decode(values)
    except _DECODE_ERRORS as error:
        skips.add(values, _problem(error))
        return None


def decode_row(row: Any, decode: Callable[[Any], T], *, query: str) -> T | None:
    """``decode(row)``, or None (skipped, logged, counted) when the row cannot be decoded."""
    skips = Skips()
    item = _decoded(row, decode, skips)
    skips.report(query)
    return item


def decode_rows(
    rows: Iterable[Any], decode: Callable[[Any], T], *, query: str, key: str | None = None
) -> list[T]:
    """Every row ``decode`` accepts, in order; the rows it cannot decode are skipped, counted
    and logged in one warning (with their ``key`` column's values, if named: e.g. a task's
    id, never a personal value), and the others are answered as usual."""
    decoded: list[T] = []
    skips = Skips(key)
    for row in rows:
        item = _decoded(row, decode, skips)
        if item is not None:
            decoded.append(item)
    skips.report(query)
    return decoded
