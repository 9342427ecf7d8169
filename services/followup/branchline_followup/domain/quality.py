"""D-12 service quality measures, as pure arithmetic over plain records.

The application selects the records (per branch / RM / period) and calls these functions; the
results are frozen pydantic models, ready to serialise for ``GET /v1/quality``. A rate with an
empty denominator is ``None`` (no data), never 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from statistics import fmean

from pydantic import BaseModel, ConfigDict

from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.tasks import FollowupTask
from branchline_followup.domain.vocabulary import (
    CONTACT_PLAN_KINDS,
    LifecycleStage,
    Severity,
    TaskKind,
    TaskStatus,
)

RETENTION_REFERENCE = 0.75
"""Industry reference retention (docs/rules.md D-12)."""


class _Measure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


# SLA compliance (D-06, D-07, D-08 and the other task rules)


@dataclass(frozen=True)
class SlaRecord:
    rule: str
    kind: str
    due_at: datetime
    status: TaskStatus
    closed_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "due_at", require_aware(self.due_at, "due_at"))
        if self.closed_at is not None:
            object.__setattr__(self, "closed_at", require_aware(self.closed_at, "closed_at"))

    @classmethod
    def of(cls, task: FollowupTask) -> SlaRecord:
        return cls(
            rule=task.rule.value,
            kind=task.kind.value,
            due_at=task.due_at,
            status=task.status,
            closed_at=task.closed_at,
        )

    def is_due(self, as_of: datetime) -> bool:
        """Counts in the denominator: not cancelled, and either done or past its deadline
        (an open task whose deadline is still ahead has no outcome yet)."""
        if self.status is TaskStatus.CANCELLED:
            return False
        return self.status is TaskStatus.DONE or self.due_at <= as_of

    def met(self) -> bool:
        return (
            self.status is TaskStatus.DONE
            and self.closed_at is not None
            and self.closed_at <= self.due_at
        )


class RuleCompliance(_Measure):
    rule: str
    due: int
    met: int
    rate: float | None


def sla_compliance(records: Iterable[SlaRecord], as_of: datetime) -> tuple[RuleCompliance, ...]:
    """Per rule: tasks done by their deadline / tasks due (see :meth:`SlaRecord.is_due`),
    sorted by rule id."""
    as_of = require_aware(as_of, "as_of")
    due: dict[str, int] = {}
    met: dict[str, int] = {}
    for record in records:
        if not record.is_due(as_of):
            continue
        due[record.rule] = due.get(record.rule, 0) + 1
        met[record.rule] = met.get(record.rule, 0) + int(record.met())
    return tuple(
        RuleCompliance(rule=rule, due=due[rule], met=met[rule], rate=_rate(met[rule], due[rule]))
        for rule in sorted(due)
    )


class RevisitCompletion(_Measure):
    due: int
    completed: int
    on_time: int
    rate: float | None
    """Completed (on time or late) / due."""


def revisit_completion(
    records: Iterable[SlaRecord],
    as_of: datetime,
    kinds: frozenset[TaskKind] = CONTACT_PLAN_KINDS,
) -> RevisitCompletion:
    """D-08 revisit completion rate over the revisit (and win-back) tasks due by ``as_of``."""
    as_of = require_aware(as_of, "as_of")
    wanted = {k.value for k in kinds}
    due = [r for r in records if r.kind in wanted and r.is_due(as_of)]
    completed = sum(r.status is TaskStatus.DONE for r in due)
    return RevisitCompletion(
        due=len(due),
        completed=completed,
        on_time=sum(r.met() for r in due),
        rate=_rate(completed, len(due)),
    )


# Waiting and handling times (D-01)


@dataclass(frozen=True)
class VisitTiming:
    """One visit: arrival (``visit.arrived``) and business (``visit.business_handled``
    ``started_at`` / ``ended_at``); ``None`` when not (yet) recorded."""

    arrived_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None


class DurationStats(_Measure):
    count: int
    excluded: int
    """Records with both times but a negative duration (inconsistent clocks): not averaged."""
    mean_seconds: float | None
    p90_seconds: float | None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` in (0, 1]): the smallest value with at least that
    fraction of the values at or below it."""
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def _durations(pairs: Iterable[tuple[datetime | None, datetime | None]]) -> DurationStats:
    seconds: list[float] = []
    excluded = 0
    for start, end in pairs:
        if start is None or end is None:
            continue
        value = (require_aware(end) - require_aware(start)).total_seconds()
        if value < 0:
            excluded += 1
        else:
            seconds.append(value)
    return DurationStats(
        count=len(seconds),
        excluded=excluded,
        mean_seconds=fmean(seconds) if seconds else None,
        p90_seconds=percentile(seconds, 0.9),
    )


def waiting_times(visits: Iterable[VisitTiming]) -> DurationStats:
    """Waiting: arrival → business started."""
    return _durations((v.arrived_at, v.started_at) for v in visits)


def handling_times(visits: Iterable[VisitTiming]) -> DurationStats:
    """Handling: business started → ended."""
    return _durations((v.started_at, v.ended_at) for v in visits)


# Satisfaction (D-10)

DIMENSIONS = ("attitude", "professionalism", "response_speed", "risk_management", "convenience")


@dataclass(frozen=True)
class SurveyScores:
    """One survey's scores, 0 to 100 per D-10 dimension (``feedback.survey_answered``)."""

    attitude: float
    professionalism: float
    response_speed: float
    risk_management: float
    convenience: float

    def __post_init__(self) -> None:
        for name in DIMENSIONS:
            value: float = getattr(self, name)
            if not 0 <= value <= 100:
                raise ValueError(f"{name} score {value} is outside 0..100 (D-10)")


class SatisfactionByDimension(_Measure):
    surveys: int
    attitude: float | None
    professionalism: float | None
    response_speed: float | None
    risk_management: float | None
    convenience: float | None
    overall: float | None
    """Mean of the five dimension means."""


def satisfaction_by_dimension(surveys: Iterable[SurveyScores]) -> SatisfactionByDimension:
    rows = list(surveys)
    means: dict[str, float | None] = {
        name: fmean(getattr(row, name) for row in rows) if rows else None for name in DIMENSIONS
    }
    present = [m for m in means.values() if m is not None]
    return SatisfactionByDimension(
        surveys=len(rows),
        attitude=means["attitude"],
        professionalism=means["professionalism"],
        response_speed=means["response_speed"],
        risk_management=means["risk_management"],
        convenience=means["convenience"],
        overall=fmean(present) if present else None,
    )


# Complaints (D-07)


@dataclass(frozen=True)
class ComplaintRecord:
    complaint_id: str
    severity: Severity


class ComplaintsBySeverity(_Measure):
    general: int
    important: int
    urgent: int
    major: int
    total: int


def complaints_by_severity(complaints: Iterable[ComplaintRecord]) -> ComplaintsBySeverity:
    """Counts per severity; a complaint id seen twice counts once (its last severity)."""
    latest = {c.complaint_id: c.severity for c in complaints}
    counts = {s: sum(v is s for v in latest.values()) for s in Severity}
    return ComplaintsBySeverity(
        general=counts[Severity.GENERAL],
        important=counts[Severity.IMPORTANT],
        urgent=counts[Severity.URGENT],
        major=counts[Severity.IMPORTANT] + counts[Severity.URGENT],
        total=len(latest),
    )


# Retention and churn (D-09, D-12)

_ACTIVE = frozenset({LifecycleStage.NEW, LifecycleStage.MATURE, LifecycleStage.HIGH_NET_WORTH})


@dataclass(frozen=True)
class ClientPeriodRecord:
    """A client's lifecycle stage at the start and at the end of the period."""

    client_id: str
    stage_at_start: LifecycleStage
    stage_at_end: LifecycleStage


class Retention(_Measure):
    base: int
    """Clients active (new, mature or high_net_worth) at the start of the period."""
    retained: int
    churned: int
    retention_rate: float | None
    churn_rate: float | None
    reference_rate: float
    meets_reference: bool | None


def retention(
    clients: Iterable[ClientPeriodRecord], reference_rate: float = RETENTION_REFERENCE
) -> Retention:
    """Retention = active clients at the start still not churned at the end / active clients
    at the start; churn = 1 - retention. Clients acquired during the period are not in the
    base (the usual (E - N) / S definition)."""
    base = [c for c in clients if c.stage_at_start in _ACTIVE]
    churned = sum(c.stage_at_end is LifecycleStage.CHURNED for c in base)
    retained = len(base) - churned
    retention_rate = _rate(retained, len(base))
    return Retention(
        base=len(base),
        retained=retained,
        churned=churned,
        retention_rate=retention_rate,
        churn_rate=_rate(churned, len(base)),
        reference_rate=reference_rate,
        meets_reference=None if retention_rate is None else retention_rate >= reference_rate,
    )


# Training (D-14): staff below the required hours of the period


@dataclass(frozen=True)
class TrainingRecord:
    """Hours of training a member of staff completed (``staff.training_recorded``)."""

    staff_id: str
    hours: Decimal
    completed_at: datetime


class StaffTraining(_Measure):
    staff_id: str
    hours: float
    """Hours completed in the period."""
    missing: float
    """Hours short of the period's requirement."""


class TrainingShortfalls(_Measure):
    reference_hours_per_year: float
    required_hours: float
    """The yearly reference pro rata over the period (a quarter: a quarter of it)."""
    staff: int
    """Staff the selection covers."""
    short: int
    shortfalls: tuple[StaffTraining, ...]
    """Each member of staff below the required hours, by id."""


def training_shortfalls(
    staff_ids: Iterable[str],
    records: Iterable[TrainingRecord],
    *,
    start: datetime,
    end: datetime,
    hours_per_year: Decimal,
) -> TrainingShortfalls:
    """D-14: the staff whose training completed in ``[start, end)`` is below the yearly
    reference pro rata over the period (365-day years)."""
    start, end = require_aware(start, "start"), require_aware(end, "end")
    days = Decimal(max((end - start).total_seconds(), 0.0)) / Decimal(86_400)
    required = (hours_per_year * days / Decimal(365)).quantize(Decimal("0.01"))
    done: dict[str, Decimal] = dict.fromkeys(staff_ids, Decimal(0))
    for record in records:
        at = require_aware(record.completed_at, "completed_at")
        if record.staff_id in done and start <= at < end:
            done[record.staff_id] += record.hours
    short = tuple(
        StaffTraining(staff_id=staff_id, hours=float(hours), missing=float(required - hours))
        for staff_id, hours in sorted(done.items())
        if hours < required
    )
    return TrainingShortfalls(
        reference_hours_per_year=float(hours_per_year),
        required_hours=float(required),
        staff=len(done),
        short=len(short),
        shortfalls=short,
    )


class QualityReport(_Measure):
    """Every D-12 measure for one selection (branch / RM / period)."""

    sla_compliance: tuple[RuleCompliance, ...]
    waiting_time: DurationStats
    handling_time: DurationStats
    satisfaction: SatisfactionByDimension
    complaints: ComplaintsBySeverity
    revisit_completion: RevisitCompletion
    retention: Retention
    training: TrainingShortfalls | None = None
    """D-14: staff below the training reference (``None``: not computed for this selection)."""


def quality_report(
    *,
    tasks: Iterable[SlaRecord],
    visits: Iterable[VisitTiming],
    surveys: Iterable[SurveyScores],
    complaints: Iterable[ComplaintRecord],
    clients: Iterable[ClientPeriodRecord],
    as_of: datetime,
    retention_reference: float = RETENTION_REFERENCE,
    training: TrainingShortfalls | None = None,
) -> QualityReport:
    task_rows = list(tasks)
    visit_rows = list(visits)
    return QualityReport(
        sla_compliance=sla_compliance(task_rows, as_of),
        waiting_time=waiting_times(visit_rows),
        handling_time=handling_times(visit_rows),
        satisfaction=satisfaction_by_dimension(surveys),
        complaints=complaints_by_severity(complaints),
        revisit_completion=revisit_completion(task_rows, as_of),
        retention=retention(clients, retention_reference),
        training=training,
    )
