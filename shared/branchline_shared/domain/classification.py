"""D-09 client classification: lifecycle stage and risk level, the one home of the rule.

Derived, never submitted: every service that needs a client's stage or risk level computes it
here from the facts it keeps (followup from its client read model).

- lifecycle stage: ``prospect`` until the identity is verified and the first business happened
  (onboarding = the later of the two); ``new`` for ``new_client_period`` after onboarding;
  ``mature`` afterwards; ``high_net_worth`` when the assets under management reach
  ``high_net_worth_aum``; ``churned`` after ``churn_after_inactivity`` without business, and from
  an account closure (until a reopening, which clears the closure from the facts);
- risk level: from the C1..C5 tolerance of the valid assessment (C1 low, C2 and C3 medium,
  C4 high, C5 very_high).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol

from branchline_shared.events.catalogue import EventType
from branchline_shared.events.vocabulary import LifecycleStage, RiskLevel, RiskTolerance

BUSINESS_EVENT_TYPES: frozenset[str] = frozenset(
    {EventType.VISIT_BUSINESS_HANDLED, EventType.PRODUCT_SOLD}
)
"""Events that count as business for D-09 (first business, last business)."""

RISK_LEVELS: Mapping[RiskTolerance, RiskLevel] = MappingProxyType(
    {
        RiskTolerance.C1: RiskLevel.LOW,
        RiskTolerance.C2: RiskLevel.MEDIUM,
        RiskTolerance.C3: RiskLevel.MEDIUM,
        RiskTolerance.C4: RiskLevel.HIGH,
        RiskTolerance.C5: RiskLevel.VERY_HIGH,
    }
)
"""D-09: the risk level of each C1..C5 tolerance (docs/rules.md)."""


def risk_level(tolerance: RiskTolerance | str | None) -> RiskLevel | None:
    """D-09: the risk level of an assessed tolerance (``None``: no valid assessment, or a
    tolerance outside C1..C5)."""
    if tolerance is None:
        return None
    try:
        return RISK_LEVELS[RiskTolerance(tolerance)]
    except ValueError:
        return None


class LifecycleThresholds(Protocol):
    """The institution's D-09 numbers (settings ``lifecycle_*``)."""

    @property
    def new_client_period(self) -> timedelta: ...

    @property
    def churn_after_inactivity(self) -> timedelta: ...

    @property
    def high_net_worth_aum(self) -> Decimal: ...


@dataclass(frozen=True)
class LifecyclePolicy:
    """:class:`LifecycleThresholds` with docs/rules.md's defaults."""

    new_client_period: timedelta = timedelta(days=90)
    churn_after_inactivity: timedelta = timedelta(days=365)
    high_net_worth_aum: Decimal = Decimal(6_000_000)

    def __post_init__(self) -> None:
        if self.new_client_period <= timedelta(0) or self.churn_after_inactivity <= timedelta(0):
            raise ValueError("the D-09 periods must be positive")
        if self.high_net_worth_aum <= 0:
            raise ValueError("high_net_worth_aum must be positive")


def _aware(moment: datetime, name: str) -> datetime:
    """Reject naive datetimes (ADR-0008); return the moment in UTC."""
    if moment.tzinfo is UTC:
        # already in UTC: ``astimezone(UTC)`` would return the same object (#12: the stage is
        # computed for every event of a client, over five instants)
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} is naive: every time must carry an offset")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class LifecycleFacts:
    """What the stage depends on. All times aware; ``None`` = has not happened."""

    registered_at: datetime
    identity_verified_at: datetime | None = None
    first_business_at: datetime | None = None
    last_business_at: datetime | None = None
    assets_under_management: Decimal = Decimal(0)
    account_closed_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in (
            "registered_at",
            "identity_verified_at",
            "first_business_at",
            "last_business_at",
            "account_closed_at",
        ):
            value: datetime | None = getattr(self, name)
            if value is not None and value.tzinfo is not UTC:  # in UTC: kept as it is
                object.__setattr__(self, name, _aware(value, name))

    def onboarded_at(self) -> datetime | None:
        """When the client stopped being a prospect: identity verified *and* first business."""
        if self.identity_verified_at is None or self.first_business_at is None:
            return None
        return max(self.identity_verified_at, self.first_business_at)


def _happened(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment <= now


def lifecycle_stage(
    facts: LifecycleFacts, now: datetime, policy: LifecycleThresholds
) -> LifecycleStage:
    """The client's stage at ``now`` (facts dated after ``now`` are ignored as not yet true).

    In order: account closed → churned; not onboarded → prospect; no business for
    ``churn_after_inactivity`` → churned; AUM ≥ ``high_net_worth_aum`` → high_net_worth;
    onboarded less than ``new_client_period`` ago → new; else mature.
    """
    return _stage(facts, _aware(now, "now"), facts.onboarded_at(), policy)


def _stage(
    facts: LifecycleFacts,
    now: datetime,
    onboarded: datetime | None,
    policy: LifecycleThresholds,
) -> LifecycleStage:
    """:func:`lifecycle_stage` with ``now`` in UTC and ``facts.onboarded_at()`` given."""
    if _happened(facts.account_closed_at, now):
        return LifecycleStage.CHURNED
    if onboarded is None or onboarded > now:
        return LifecycleStage.PROSPECT
    last_business = facts.last_business_at or facts.first_business_at
    if last_business is not None and now - last_business >= policy.churn_after_inactivity:
        return LifecycleStage.CHURNED
    if facts.assets_under_management >= policy.high_net_worth_aum:
        return LifecycleStage.HIGH_NET_WORTH
    if now - onboarded < policy.new_client_period:
        return LifecycleStage.NEW
    return LifecycleStage.MATURE


def next_stage_change_at(
    facts: LifecycleFacts, now: datetime, policy: LifecycleThresholds
) -> datetime | None:
    """When the stage will next change by the passing of time alone (e.g. new → mature,
    → churned by inactivity), for a durable timer; ``None`` if only a new event can change it.
    The stage only changes at these instants: onboarding, onboarding + the new period, last
    business + the inactivity limit, account closure."""
    return stage_and_next_change(facts, now, policy)[1]


def stage_and_next_change(
    facts: LifecycleFacts, now: datetime, policy: LifecycleThresholds
) -> tuple[LifecycleStage, datetime | None]:
    """``(lifecycle_stage(facts, now, policy), next_stage_change_at(facts, now, policy))``,
    the stage at ``now`` computed once for both (#12: a client's every event asks for both)."""
    now = _aware(now, "now")
    onboarded = facts.onboarded_at()
    stage = _stage(facts, now, onboarded, policy)
    last_business = facts.last_business_at or facts.first_business_at
    candidates = [
        onboarded,
        None if onboarded is None else onboarded + policy.new_client_period,
        None if last_business is None else last_business + policy.churn_after_inactivity,
        facts.account_closed_at,
    ]
    for moment in sorted(c for c in candidates if c is not None and c > now):
        if _stage(facts, moment, onboarded, policy) is not stage:
            return stage, moment
    return stage, None
