"""D-17 improvement loop and D-09 behaviour, as pure arithmetic over plain records.

- complaint analysis: complaints counted by root cause, by product and by branch;
- corrective-action completion: planned, done, done by the deadline, open past the deadline;
- promises kept: a promise (consultation promise, complaint progress promise) is kept when done
  by its (possibly renegotiated) deadline; a deadline passed without renegotiation is a miss
  that counts against D-12;
- behaviour class (D-09): high/low frequency and conservative/aggressive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.quality import SlaRecord
from branchline_followup.domain.vocabulary import TaskKind, TaskStatus

UNCLASSIFIED = "unclassified"
"""The bucket of complaints without a root cause (not resolved yet) or without a product."""


class _Measure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


@dataclass(frozen=True)
class AnalysedComplaint:
    branch_id: str | None
    root_cause: str | None
    product: str | None
    """The product id, else the product category, else None."""


class ComplaintAnalysis(_Measure):
    total: int
    by_root_cause: dict[str, int]
    by_product: dict[str, int]
    by_branch: dict[str, int]


def complaint_analysis(complaints: Iterable[AnalysedComplaint]) -> ComplaintAnalysis:
    """D-17: complaints by root cause, product and branch (missing values: ``unclassified``)."""
    causes: Counter[str] = Counter()
    products: Counter[str] = Counter()
    branches: Counter[str] = Counter()
    total = 0
    for complaint in complaints:
        total += 1
        causes[complaint.root_cause or UNCLASSIFIED] += 1
        products[complaint.product or UNCLASSIFIED] += 1
        branches[complaint.branch_id or UNCLASSIFIED] += 1
    return ComplaintAnalysis(
        total=total,
        by_root_cause=dict(sorted(causes.items())),
        by_product=dict(sorted(products.items())),
        by_branch=dict(sorted(branches.items())),
    )


@dataclass(frozen=True)
class CorrectiveActionRecord:
    root_cause: str
    due_at: datetime
    completed_at: datetime | None


class CorrectiveActionCompletion(_Measure):
    planned: int
    done: int
    done_on_time: int
    open_overdue: int
    completion_rate: float | None
    """Done / planned."""
    on_time_rate: float | None
    """Done by the deadline / actions whose outcome is known (done, or open past the deadline)."""
    by_root_cause: dict[str, int]


def corrective_action_completion(
    actions: Iterable[CorrectiveActionRecord], as_of: datetime
) -> CorrectiveActionCompletion:
    """D-17: corrective actions tracked to done (a D-12 measure)."""
    as_of = require_aware(as_of, "as_of")
    planned = done = on_time = overdue = 0
    causes: Counter[str] = Counter()
    for action in actions:
        planned += 1
        causes[action.root_cause] += 1
        if action.completed_at is not None and action.completed_at <= as_of:
            done += 1
            on_time += int(action.completed_at <= action.due_at)
        elif action.due_at <= as_of:
            overdue += 1
    return CorrectiveActionCompletion(
        planned=planned,
        done=done,
        done_on_time=on_time,
        open_overdue=overdue,
        completion_rate=_rate(done, planned),
        on_time_rate=_rate(on_time, done + overdue),
        by_root_cause=dict(sorted(causes.items())),
    )


class PromisesKept(_Measure):
    due: int
    kept: int
    missed: int
    renegotiated: int
    """Renegotiations with the client before the deadline (D-17), in the period."""
    kept_rate: float | None


PROMISE_KINDS = frozenset(
    {TaskKind.CONSULTATION_PROMISE.value, TaskKind.COMPLAINT_PROGRESS_PROMISE.value}
)


def promises_kept(tasks: Iterable[SlaRecord], renegotiations: int, as_of: datetime) -> PromisesKept:
    """D-17: promise tasks with an outcome by ``as_of`` (done, or past their deadline): kept
    when done by the deadline in force (a renegotiation in time moved it), else missed."""
    as_of = require_aware(as_of, "as_of")
    due = kept = 0
    for task in tasks:
        if task.kind not in PROMISE_KINDS or task.status is TaskStatus.CANCELLED:
            continue
        if not task.is_due(as_of):
            continue
        due += 1
        kept += int(task.met())
    return PromisesKept(
        due=due,
        kept=kept,
        missed=due - kept,
        renegotiated=renegotiations,
        kept_rate=_rate(kept, due),
    )


class ImprovementReport(_Measure):
    """What ``GET /v1/quality`` reports for the improvement loop (D-17)."""

    complaint_analysis: ComplaintAnalysis
    corrective_actions: CorrectiveActionCompletion
    promises: PromisesKept


# --- D-09 behaviour ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BehaviourPolicy:
    """D-09 defaults: high frequency = 4+ business events in 90 days; aggressive = holdings
    above R3 make up more than half."""

    window: timedelta = timedelta(days=90)
    high_frequency_events: int = 4
    aggressive_above_rank: int = 3
    aggressive_share: Decimal = Decimal("0.5")


@dataclass(frozen=True)
class BusinessRecord:
    occurred_at: datetime
    product_risk: str | None = None
    amount: Decimal | None = None


class Behaviour(_Measure):
    frequency: str
    """``high_frequency`` or ``low_frequency``."""
    style: str
    """``aggressive`` or ``conservative``."""
    business_events_in_window: int
    share_above_threshold: float | None
    """The share (by amount sold) of holdings above the risk threshold; None without sales of
    known risk."""


def behaviour_class(
    records: Iterable[BusinessRecord], at: datetime, policy: BehaviourPolicy | None = None
) -> Behaviour:
    """D-09 behaviour of a client at ``at`` from their business events (visits with business
    handled, sales). Holdings are approximated by the amounts sold (no redemption event yet)."""
    policy = policy or BehaviourPolicy()
    at = require_aware(at, "at")
    recent = 0
    total = above = Decimal(0)
    for record in records:
        when = require_aware(record.occurred_at, "occurred_at")
        if when > at:
            continue
        if at - when < policy.window:
            recent += 1
        if record.product_risk and record.amount is not None and record.amount > 0:
            total += record.amount
            if int(record.product_risk[1:]) > policy.aggressive_above_rank:
                above += record.amount
    share = None if total == 0 else above / total
    return Behaviour(
        frequency="high_frequency" if recent >= policy.high_frequency_events else "low_frequency",
        style="aggressive"
        if share is not None and share > policy.aggressive_share
        else "conservative",
        business_events_in_window=recent,
        share_above_threshold=None if share is None else float(share),
    )
