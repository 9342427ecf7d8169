"""D-17 regulatory complaint statistics per jurisdiction profile and period, as pure arithmetic
over the complaints received in the period (reproducible from the events: the records are the
read model's, which a rebuild derives again from the same events).

Formats:

- ``finra_4530_quarterly`` (profiles with ``quarterly_statistics``, e.g. ``us_broker``): per
  calendar quarter of receipt (the branch's local date), complaints counted by problem code and
  product code, with the day the quarter's report is due (the 15th after the quarter);
- ``cn_regulator_periodic`` (profiles with a decision clock, e.g. ``cn_regulator``): per quarter,
  complaints by product category and problem, with how many were decided within the
  regulator's deadline (15 days, complex 30), decided late, or are still open (within or past
  the deadline) as of the report;
- ``complaint_statistics`` (any other profile): per quarter, by problem and product category,
  received / resolved / open.

Problem and product codes are the product's closed codes (``ComplaintProblem``,
``ProductCategory``) translated by the profile's code map when one is configured (an
institution maps them to its regulator's current code list); a complaint without a problem or
product is counted under ``unclassified``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from branchline_followup.domain.business_days import BusinessCalendar, require_aware
from branchline_followup.domain.jurisdictions import decision_deadline, statistics_quarter
from branchline_followup.domain.policy import ComplaintClocks

UNCLASSIFIED = "unclassified"
FINRA_4530 = "finra_4530_quarterly"
CN_REGULATOR = "cn_regulator_periodic"
GENERIC = "complaint_statistics"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class StatisticsComplaint:
    """One complaint as the statistics count it."""

    branch_id: str | None
    received_at: datetime
    problem: str | None
    product_category: str | None
    complex_case: bool = False
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class CodeMap:
    """The profile's translation of the product's codes into the regulator's (identity for a
    code not listed)."""

    problems: Mapping[str, str]
    products: Mapping[str, str]

    def problem(self, value: str | None) -> str:
        return UNCLASSIFIED if value is None else self.problems.get(value, value)

    def product(self, value: str | None) -> str:
        return UNCLASSIFIED if value is None else self.products.get(value, value)


IDENTITY = CodeMap(problems={}, products={})


class StatisticsRow(_Frozen):
    period: str
    """The quarter of receipt, e.g. ``2026-Q3``."""
    report_due_on: date
    problem_code: str
    product_code: str
    received: int
    resolved: int
    open: int
    resolved_within_deadline: int | None = None
    resolved_late: int | None = None
    open_past_deadline: int | None = None


class StatisticsReport(_Frozen):
    profile: str
    format: str
    period_from: datetime
    period_to: datetime
    as_of: datetime
    total_received: int
    rows: list[StatisticsRow]


def report_format(clocks: ComplaintClocks) -> str:
    if clocks.quarterly_statistics:
        return FINRA_4530
    if clocks.decision_days is not None:
        return CN_REGULATOR
    return GENERIC


@dataclass
class _Cell:
    received: int = 0
    resolved: int = 0
    open: int = 0
    within: int = 0
    late: int = 0
    open_late: int = 0


def complaint_statistics(
    complaints: Iterable[StatisticsComplaint],
    *,
    profile: str,
    clocks: ComplaintClocks,
    calendar_for: Callable[[str | None], BusinessCalendar],
    period_from: datetime,
    period_to: datetime,
    as_of: datetime,
    codes: CodeMap = IDENTITY,
) -> StatisticsReport:
    """The report of ``profile`` for complaints received in ``[period_from, period_to)``;
    resolutions count when they happened by ``as_of``."""
    period_from = require_aware(period_from, "period_from")
    period_to = require_aware(period_to, "period_to")
    as_of = require_aware(as_of, "as_of")
    fmt = report_format(clocks)
    cells: dict[tuple[str, date, str, str], _Cell] = {}
    total = 0
    for complaint in complaints:
        received = require_aware(complaint.received_at, "received_at")
        if not period_from <= received < period_to:
            continue
        total += 1
        calendar = calendar_for(complaint.branch_id)
        quarter = statistics_quarter(received, calendar)
        key = (
            quarter.label,
            quarter.report_due_on,
            codes.problem(complaint.problem),
            codes.product(complaint.product_category),
        )
        cell = cells.setdefault(key, _Cell())
        cell.received += 1
        resolved = complaint.resolved_at is not None and complaint.resolved_at <= as_of
        deadline = decision_deadline(
            received, complex_case=complaint.complex_case, clocks=clocks, calendar=calendar
        )
        if resolved:
            cell.resolved += 1
            assert complaint.resolved_at is not None
            if deadline is not None:
                if complaint.resolved_at <= deadline:
                    cell.within += 1
                else:
                    cell.late += 1
        else:
            cell.open += 1
            if deadline is not None and deadline < as_of:
                cell.open_late += 1
    with_deadline = fmt == CN_REGULATOR
    rows = [
        StatisticsRow(
            period=period,
            report_due_on=due_on,
            problem_code=problem,
            product_code=product,
            received=cell.received,
            resolved=cell.resolved,
            open=cell.open,
            resolved_within_deadline=cell.within if with_deadline else None,
            resolved_late=cell.late if with_deadline else None,
            open_past_deadline=cell.open_late if with_deadline else None,
        )
        for (period, due_on, problem, product), cell in sorted(cells.items())
    ]
    return StatisticsReport(
        profile=profile,
        format=fmt,
        period_from=period_from,
        period_to=period_to,
        as_of=as_of,
        total_received=total,
        rows=rows,
    )


CSV_COLUMNS = (
    "period",
    "report_due_on",
    "problem_code",
    "product_code",
    "received",
    "resolved",
    "open",
    "resolved_within_deadline",
    "resolved_late",
    "open_past_deadline",
)


def report_csv(report: StatisticsReport) -> str:
    """The report's rows as CSV (a header line, then one line per row; empty cells where the
    format has no such column)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        values = row.model_dump(mode="json")
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
    return out.getvalue()
