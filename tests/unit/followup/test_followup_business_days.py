"""Business-day arithmetic of the D-07 jurisdiction clocks: weekends, holidays, zones, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_followup.domain import BusinessCalendar

pytestmark = pytest.mark.unit

LONDON = "Europe/London"
# England and Wales bank holidays around Easter 2026 (Good Friday, Easter Monday).
EASTER_2026 = frozenset({date(2026, 4, 3), date(2026, 4, 6)})
UK = BusinessCalendar(timezone=LONDON, holidays=EASTER_2026)


def london(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(LONDON))


def test_d07_fca_friday_receipt_counts_monday_to_wednesday() -> None:
    received = london(2026, 11, 20, 10)  # Friday, GMT
    assert UK.close_of_business_days_after(received, 3) == datetime(2026, 11, 25, 17, tzinfo=UTC)


def test_d07_fca_saturday_receipt_counts_from_monday() -> None:
    received = london(2026, 11, 21, 11)  # Saturday
    assert UK.close_of_business_days_after(received, 3) == datetime(2026, 11, 25, 17, tzinfo=UTC)


def test_d07_fca_receipt_after_close_of_business_counts_from_its_own_day() -> None:
    # DISP 1.5.3G (after-hours receipt treated as next day) was deleted in 2016.
    received = london(2026, 11, 23, 18, 30)  # Monday, after 17:00
    assert UK.close_of_business_days_after(received, 3) == datetime(2026, 11, 26, 17, tzinfo=UTC)


def test_d07_fca_easter_holidays_are_skipped() -> None:
    received = london(2026, 4, 2, 10)  # Thursday before Good Friday
    # Fri 3 (holiday), Sat, Sun, Mon 6 (holiday) → Tue 7, Wed 8, Thu 9; 17:00 BST = 16:00 UTC
    assert UK.close_of_business_days_after(received, 3) == datetime(2026, 4, 9, 16, tzinfo=UTC)


def test_d07_fca_deadline_across_the_spring_dst_change() -> None:
    received = london(2026, 3, 27, 10)  # Friday, GMT; clocks go forward on Sunday 29 March
    due = UK.close_of_business_days_after(received, 3)
    assert due == datetime(2026, 4, 1, 16, tzinfo=UTC)  # Wednesday 17:00 BST
    assert due.astimezone(ZoneInfo(LONDON)).time() == time(17, 0)


def test_d07_fca_deadline_across_the_autumn_dst_change() -> None:
    received = london(2026, 10, 23, 10)  # Friday, BST; clocks go back on Sunday 25 October
    assert UK.close_of_business_days_after(received, 3) == datetime(2026, 10, 28, 17, tzinfo=UTC)


def test_d07_the_local_date_of_receipt_decides_not_the_utc_date() -> None:
    # Thursday 23:30 UTC is already Friday 00:30 in London (BST): Mon, Tue, Wed count.
    received = datetime(2026, 7, 2, 23, 30, tzinfo=UTC)
    assert UK.local_date(received) == date(2026, 7, 3)
    assert UK.close_of_business_days_after(received, 3) == datetime(2026, 7, 8, 16, tzinfo=UTC)
    # The same instant on a UTC calendar is a Thursday: Fri, Mon, Tue count.
    utc_calendar = BusinessCalendar()
    assert utc_calendar.close_of_business_days_after(received, 3) == datetime(
        2026, 7, 7, 17, tzinfo=UTC
    )


def test_end_of_calendar_days_is_local_midnight_across_dst() -> None:
    received = london(2026, 3, 27, 10)  # GMT
    # 56 days later is 22 May (BST): the day ends at 23 May 00:00 BST = 22 May 23:00 UTC
    assert UK.end_of_calendar_days_after(received, 56) == datetime(2026, 5, 22, 23, tzinfo=UTC)


def test_add_business_days_zero_is_the_day_itself_and_negative_is_refused() -> None:
    saturday = date(2026, 11, 21)
    assert UK.add_business_days(saturday, 0) == saturday
    with pytest.raises(ValueError, match="negative"):
        UK.add_business_days(saturday, -1)


def test_calendar_refuses_bad_configuration() -> None:
    with pytest.raises(Exception, match="Nowhere/City"):
        BusinessCalendar(timezone="Nowhere/City")
    with pytest.raises(ValueError, match="working weekday"):
        BusinessCalendar(weekend=frozenset(range(7)))
    with pytest.raises(ValueError, match="naive"):
        UK.local_date(datetime(2026, 1, 1))


def test_a_custom_weekend_is_honoured() -> None:
    friday_saturday_weekend = BusinessCalendar(weekend=frozenset({4, 5}))
    thursday = date(2026, 11, 19)
    assert friday_saturday_weekend.add_business_days(thursday, 1) == date(2026, 11, 22)  # Sunday


days = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))
holiday_sets = st.frozensets(days, max_size=40)


@given(day=days, count=st.integers(min_value=1, max_value=60), holidays=holiday_sets)
def test_d07_business_day_addition_never_lands_on_a_weekend_or_holiday(
    day: date, count: int, holidays: frozenset[date]
) -> None:
    calendar = BusinessCalendar(timezone=LONDON, holidays=holidays)
    result = calendar.add_business_days(day, count)
    assert result > day
    assert result.weekday() < 5
    assert result not in holidays
    # exactly `count` business days lie in (day, result]
    span = [day + timedelta(days=i) for i in range(1, (result - day).days + 1)]
    assert sum(calendar.is_business_day(d) for d in span) == count


@given(
    first=days,
    gap=st.integers(min_value=0, max_value=30),
    count=st.integers(min_value=0, max_value=30),
    more=st.integers(min_value=0, max_value=30),
    holidays=holiday_sets,
)
def test_d07_business_day_addition_is_monotonic(
    first: date, gap: int, count: int, more: int, holidays: frozenset[date]
) -> None:
    calendar = BusinessCalendar(holidays=holidays)
    later = first + timedelta(days=gap)
    assert calendar.add_business_days(first, count) <= calendar.add_business_days(later, count)
    assert calendar.add_business_days(first, count) <= calendar.add_business_days(
        first, count + more
    )
    if more > 0:
        assert calendar.add_business_days(first, count) < calendar.add_business_days(
            first, count + more
        )


@given(
    moment=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(
        ["Europe/London", "America/New_York", "Asia/Shanghai", "Australia/Sydney", "UTC"]
    ),
    count=st.integers(min_value=1, max_value=20),
)
def test_d07_close_of_business_is_17_local_on_a_business_day_after_receipt(
    moment: datetime, zone: str, count: int
) -> None:
    calendar = BusinessCalendar(timezone=zone)
    due = calendar.close_of_business_days_after(moment, count)
    assert due.tzinfo is UTC
    local = due.astimezone(ZoneInfo(zone))
    assert local.time() == time(17, 0)
    assert calendar.is_business_day(local.date())
    assert local.date() > calendar.local_date(moment)
    assert due > moment
