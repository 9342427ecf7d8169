"""Bounded scalar types of the payload models: texts, codes, scores, amounts, times."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
)

from branchline_shared.events.bounded import CleanText, Instant, Sealable


def _text(max_length: int) -> StringConstraints:
    """A required free text: stripped, one to ``max_length`` characters."""
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


# Every free text is clean (bounded.clean_text) and sealable (it may hold personal data, D-04);
# they differ only in their bound.
Label = Annotated[str, _text(200), CleanText, Sealable]
"""A short required text: a reason, a counter, a missing item, a purpose."""
Note = Annotated[str, _text(2000), CleanText, Sealable]
"""A note written by staff."""
Text = Annotated[str, _text(4000), CleanText, Sealable]
"""A longer text: a question, an answer, a complaint summary, a resolution."""
PersonalValue = Annotated[str, _text(500), CleanText, Sealable]
TermKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
TermValue = Annotated[str, _text(1000), CleanText, Sealable]
SourcePath = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.[a-z_]+/[a-z_]+$")]
"""Where a personal value sits: ``<event type>/<payload key>``."""
RuleId = Annotated[str, StringConstraints(pattern=r"^D-[0-9]{2}[a-z]?$")]
"""A rule of docs/rules.md: ``D-05``, ``D-01a``."""
Score = Annotated[int, Field(ge=0, le=100, strict=True)]
"""D-10: 0..100, an integer (``80.0`` and ``"80"`` are refused)."""
Amount = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=4)]
"""A positive amount in the institution's currency; JSON number or decimal string."""
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""ISO 4217 code, e.g. ``CNY``."""


def _date_as_start_of_day(value: Any) -> Any:
    """An RFC 3339 full-date (``2030-05-01``) means the first instant of that day in UTC."""
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time.min, tzinfo=UTC)
    return value


DateOrTime = Annotated[Instant, BeforeValidator(_date_as_start_of_day)]
"""An aware time, or an RFC 3339 date read as the start of that day in UTC."""
