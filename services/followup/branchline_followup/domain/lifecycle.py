"""D-09 lifecycle stage of a client, from the facts the client read model keeps.

prospect → new → mature → high_net_worth; any → churned. Thresholds come from the
:class:`FollowupPolicy` (new for 90 days, high net worth from 6,000,000 AUM, churned after 365
days without business or on account closure).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.vocabulary import LifecycleStage
from branchline_shared.events.catalogue import EventType

BUSINESS_EVENT_TYPES: frozenset[str] = frozenset(
    {EventType.VISIT_BUSINESS_HANDLED, EventType.PRODUCT_SOLD}
)
"""Events that count as business for D-09 (first business, last business)."""


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
            if value is not None:
                object.__setattr__(self, name, require_aware(value, name))

    def onboarded_at(self) -> datetime | None:
        """When the client stopped being a prospect: identity verified *and* first business."""
        if self.identity_verified_at is None or self.first_business_at is None:
            return None
        return max(self.identity_verified_at, self.first_business_at)


def _happened(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment <= now


def lifecycle_stage(facts: LifecycleFacts, now: datetime, policy: FollowupPolicy) -> LifecycleStage:
    """The client's stage at ``now`` (facts dated after ``now`` are ignored as not yet true).

    In order: account closed → churned; not onboarded → prospect; no business for
    ``churn_after_inactivity`` → churned; AUM ≥ ``high_net_worth_aum`` → high_net_worth;
    onboarded less than ``new_client_period`` ago → new; else mature.
    """
    now = require_aware(now, "now")
    if _happened(facts.account_closed_at, now):
        return LifecycleStage.CHURNED
    onboarded = facts.onboarded_at()
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
    facts: LifecycleFacts, now: datetime, policy: FollowupPolicy
) -> datetime | None:
    """When the stage will next change by the passing of time alone (e.g. new → mature,
    → churned by inactivity), for the read model's durable timer; ``None`` if only a new event
    can change it. The stage only changes at these instants: onboarding, onboarding + the new
    period, last business + the inactivity limit, account closure."""
    now = require_aware(now, "now")
    stage = lifecycle_stage(facts, now, policy)
    onboarded = facts.onboarded_at()
    last_business = facts.last_business_at or facts.first_business_at
    candidates = [
        onboarded,
        None if onboarded is None else onboarded + policy.new_client_period,
        None if last_business is None else last_business + policy.churn_after_inactivity,
        facts.account_closed_at,
    ]
    for moment in sorted(c for c in candidates if c is not None and c > now):
        if lifecycle_stage(facts, moment, policy) is not stage:
            return moment
    return None
