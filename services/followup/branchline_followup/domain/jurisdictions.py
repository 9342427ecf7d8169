"""Jurisdiction profiles of the complaint clocks (D-07).

A profile is chosen per branch (:meth:`FollowupPolicy.profile_for`). The deadlines it yields
are computed once, when the complaint is received, and stored with each task together with
the profile's name, so a later change of profile never rewrites an existing deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from branchline_followup.domain.business_days import BusinessCalendar, require_aware
from branchline_followup.domain.policy import ComplaintClocks
from branchline_followup.domain.vocabulary import Severity, TaskKind


@dataclass(frozen=True)
class ComplaintDeadline:
    kind: TaskKind
    due_at: datetime


def decision_deadline(
    received_at: datetime,
    *,
    complex_case: bool,
    clocks: ComplaintClocks,
    calendar: BusinessCalendar,
) -> datetime | None:
    """The regulator's decision deadline (cn_regulator: 15 days, complex 30), if the profile
    has one: the end of the local day so many calendar days after the day of receipt."""
    days = clocks.decision_days
    if complex_case and clocks.complex_decision_days is not None:
        days = clocks.complex_decision_days
    if days is None:
        return None
    return calendar.end_of_calendar_days_after(received_at, days)


def complaint_deadlines(
    received_at: datetime,
    severity: Severity,
    *,
    complex_case: bool,
    clocks: ComplaintClocks,
    calendar: BusinessCalendar,
) -> tuple[ComplaintDeadline, ...]:
    """Every deadline a complaint received at ``received_at`` gets under ``clocks``."""
    received_at = require_aware(received_at, "received_at")
    deadlines: list[ComplaintDeadline] = []
    if clocks.response is not None:
        deadlines.append(
            ComplaintDeadline(TaskKind.COMPLAINT_RESPONSE, received_at + clocks.response)
        )
    if clocks.major_handling is not None and severity.is_major:
        deadlines.append(
            ComplaintDeadline(TaskKind.COMPLAINT_HANDLING, received_at + clocks.major_handling)
        )
    decision = decision_deadline(
        received_at, complex_case=complex_case, clocks=clocks, calendar=calendar
    )
    if decision is not None:
        deadlines.append(ComplaintDeadline(TaskKind.COMPLAINT_DECISION, decision))
    if clocks.summary_resolution_business_days is not None:
        deadlines.append(
            ComplaintDeadline(
                TaskKind.COMPLAINT_SUMMARY_RESOLUTION,
                calendar.close_of_business_days_after(
                    received_at, clocks.summary_resolution_business_days
                ),
            )
        )
    if clocks.final_response_days is not None:
        deadlines.append(
            ComplaintDeadline(
                TaskKind.COMPLAINT_FINAL_RESPONSE,
                calendar.end_of_calendar_days_after(received_at, clocks.final_response_days),
            )
        )
    return tuple(deadlines)


class StatisticsQuarter(BaseModel):
    """The calendar quarter a complaint counts in for FINRA Rule 4530(d) statistics, and the
    day the statistics are due (the 15th of the month after the quarter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    year: int
    quarter: int
    starts_on: date
    ends_on: date
    report_due_on: date

    @property
    def label(self) -> str:
        return f"{self.year}-Q{self.quarter}"


def statistics_quarter(received_at: datetime, calendar: BusinessCalendar) -> StatisticsQuarter:
    """The reporting quarter of a complaint received at ``received_at`` (the branch's local date
    decides: a complaint received on 31 March 23:30 in New York counts in Q1)."""
    day = calendar.local_date(received_at)
    quarter = (day.month - 1) // 3 + 1
    first_month = 3 * (quarter - 1) + 1
    starts_on = date(day.year, first_month, 1)
    next_start = date(day.year + 1, 1, 1) if quarter == 4 else date(day.year, first_month + 3, 1)
    ends_on = date.fromordinal(next_start.toordinal() - 1)
    return StatisticsQuarter(
        year=day.year,
        quarter=quarter,
        starts_on=starts_on,
        ends_on=ends_on,
        report_due_on=next_start.replace(day=15),
    )
