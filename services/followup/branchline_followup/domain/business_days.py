"""Business-day arithmetic in a branch's local time zone (D-07 jurisdiction clocks).

Deadlines such as "close of business on the third business day after receipt" (FCA DISP 1.5)
are defined on the branch's local calendar, so the arithmetic runs on local dates and the
result is converted to UTC (ADR-0008). The zone's rules (summer time) come
from :mod:`zoneinfo`; the holidays are configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime

_SATURDAY_SUNDAY = frozenset({5, 6})


def require_aware(moment: datetime, name: str = "moment") -> datetime:
    """Reject naive datetimes (ADR-0008); return the moment in UTC.

    A moment already in UTC is returned as it is, as ``astimezone(UTC)`` returns it (#12:
    nearly every instant the projection checks, each ``UtcDatetime`` field validated, is)."""
    if moment.tzinfo is UTC and type(moment) is datetime:
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} is naive: every time must carry an offset")
    return moment.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(require_aware)]
"""A pydantic field type: an aware datetime, normalised to UTC (ADR-0008)."""


@dataclass(frozen=True)
class BusinessCalendar:
    """The working calendar of one branch.

    ``timezone`` is an IANA zone name (e.g. ``Europe/London``); ``weekend`` holds ISO weekday
    numbers counted from Monday = 0 (default Saturday and Sunday); ``holidays`` are local dates
    that are not business days; ``close_of_business`` is the local wall-clock time at which a
    business day ends (default 17:00).
    """

    timezone: str = "UTC"
    holidays: frozenset[date] = field(default_factory=frozenset)
    close_of_business: time = time(17, 0)
    weekend: frozenset[int] = _SATURDAY_SUNDAY

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # fails early on an unknown zone
        if not self.weekend <= frozenset(range(7)):
            raise ValueError("weekend days are weekday numbers 0 (Monday) .. 6 (Sunday)")
        if len(self.weekend) == 7:
            raise ValueError("a calendar needs at least one working weekday")
        if self.close_of_business.tzinfo is not None:
            raise ValueError("close_of_business is a local wall-clock time, without a zone")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_date(self, moment: datetime) -> date:
        """The branch's calendar date at ``moment``."""
        return require_aware(moment).astimezone(self.zone).date()

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self.holidays

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after ``day``."""
        candidate = day + timedelta(days=1)
        while not self.is_business_day(candidate):
            candidate += timedelta(days=1)
        return candidate

    def add_business_days(self, day: date, count: int) -> date:
        """The ``count``-th business day following ``day`` (``day`` itself is not counted,
        whether or not it is a business day); ``count == 0`` returns ``day``."""
        if count < 0:
            raise ValueError("count must not be negative")
        current = day
        for _ in range(count):
            current = self.next_business_day(current)
        return current

    def at_local(self, day: date, wall_clock: time) -> datetime:
        """The UTC instant of a local wall-clock time on ``day``.

        A wall-clock time that does not exist that day (skipped by a summer-time change) is
        read with the offset in force before the change (PEP 495, ``fold=0``).
        """
        return datetime.combine(day, wall_clock, tzinfo=self.zone).astimezone(UTC)

    def close_of_business_on(self, day: date) -> datetime:
        """End of the business day ``day`` (local ``close_of_business``), in UTC."""
        return self.at_local(day, self.close_of_business)

    def end_of_day(self, day: date) -> datetime:
        """End of the local calendar day ``day`` (the next local midnight), in UTC."""
        return self.at_local(day + timedelta(days=1), time(0, 0))

    def close_of_business_days_after(self, moment: datetime, count: int) -> datetime:
        """Close of business on the ``count``-th business day following the local day of
        ``moment`` (e.g. FCA DISP 1.5.1R with ``count = 3``)."""
        return self.close_of_business_on(self.add_business_days(self.local_date(moment), count))

    def end_of_calendar_days_after(self, moment: datetime, count: int) -> datetime:
        """End of the local day ``count`` calendar days after the local day of ``moment``
        (the day of ``moment`` is not counted: "within 15 days" of a Monday ends at the end
        of the Tuesday two weeks later)."""
        if count < 0:
            raise ValueError("count must not be negative")
        return self.end_of_day(self.local_date(moment) + timedelta(days=count))
