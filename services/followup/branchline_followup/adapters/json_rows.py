"""Rows as one JSON argument of a statement (#12): a statement's rows as one text, read in
PostgreSQL by ``jsonb_array_elements`` with each column cast from its text, instead of one
array per column whose every element asyncpg checks in Python before encoding it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson


def _row_value(value: Any) -> str:
    """A value orjson has no type for: an amount (``numeric``), as its exact decimal text; an
    id read back from PostgreSQL (asyncpg's own ``UUID`` class), as its canonical text."""
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a row value")


def rows_argument(rows: Sequence[Sequence[Any]]) -> str:
    """A part's rows as its one argument: a JSON array of rows, each an array of its values in
    the part's column order (#12: one text encoded by orjson, where arrays of columns made
    asyncpg check each element of each array in Python). Every value keeps its meaning through
    the text: ids and instants as PostgreSQL reads them (RFC 3339 with the offset, to the
    microsecond), amounts as exact decimals, ``None`` as ``null``."""
    return orjson.dumps(rows, default=_row_value, option=orjson.OPT_NAIVE_UTC).decode()


def values_argument(values: Sequence[Any]) -> str:
    """A list of single values as one argument (a JSON array, read by
    ``jsonb_array_elements_text``), as :func:`rows_argument` its rows."""
    return orjson.dumps(values, default=_row_value, option=orjson.OPT_NAIVE_UTC).decode()
