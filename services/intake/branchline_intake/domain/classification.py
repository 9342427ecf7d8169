"""D-09 client classification, derived from the state at a given time (never submitted).

- type: as registered;
- lifecycle stage: ``prospect`` until the identity is verified and the first business happened
  (onboarding = the later of the two); ``churned`` once ``policy.churn_after`` passed without
  business; ``high_net_worth`` when the assets under management reach
  ``policy.high_net_worth_threshold``; ``new`` for ``policy.new_client_period`` after
  onboarding; ``mature`` afterwards; ``churned`` from an account closure until a reopening.
  The assets under management are approximated by the sum of
  sales (see :class:`~.state.BusinessActivity`);
- risk level: ``policy.risk_levels`` of the tolerance of the assessment valid at that time
  (default C1 low, C2 and C3 medium, C4 high, C5 very_high); none without a valid assessment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from branchline_intake.domain.policy import DEFAULT_POLICY, IntakePolicy
from branchline_intake.domain.state import ClientState
from branchline_shared.events.vocabulary import (
    ClientType,
    LifecycleStage,
    RiskLevel,
    RiskTolerance,
)


@dataclass(frozen=True, slots=True)
class ClientClassification:
    """What D-09 says about a client at one moment."""

    client_type: ClientType | None
    rm_id: str | None
    lifecycle_stage: LifecycleStage
    risk_tolerance: RiskTolerance | None
    risk_level: RiskLevel | None
    assets_under_management: Decimal


def classify(
    state: ClientState, at: datetime, policy: IntakePolicy = DEFAULT_POLICY
) -> ClientClassification:
    """D-09: the client's classification at ``at``."""
    tolerance = risk_tolerance(state, at, policy)
    return ClientClassification(
        client_type=state.client.client_type,
        rm_id=state.client.rm_id,
        lifecycle_stage=lifecycle_stage(state, at, policy),
        risk_tolerance=tolerance,
        risk_level=None if tolerance is None else policy.risk_levels[tolerance],
        assets_under_management=state.activity.assets_under_management,
    )


def onboarded_at(state: ClientState) -> datetime | None:
    """D-09: when the client stopped being a prospect (identity verified and first business)."""
    verified = state.client.identity_verified_at
    first = state.activity.first_business_at
    if verified is None or first is None:
        return None
    return max(verified, first)


def lifecycle_stage(
    state: ClientState, at: datetime, policy: IntakePolicy = DEFAULT_POLICY
) -> LifecycleStage:
    """D-09: prospect → new → mature → high_net_worth; any → churned."""
    closed_at = state.client.account_closed_at
    if closed_at is not None and closed_at <= at:
        return LifecycleStage.CHURNED
    onboarded = onboarded_at(state)
    if onboarded is None or at < onboarded:
        return LifecycleStage.PROSPECT
    last = state.activity.last_business_at
    if last is not None and at - last >= policy.churn_after:
        return LifecycleStage.CHURNED
    if state.activity.assets_under_management >= policy.high_net_worth_threshold:
        return LifecycleStage.HIGH_NET_WORTH
    if at - onboarded < policy.new_client_period:
        return LifecycleStage.NEW
    return LifecycleStage.MATURE


def risk_tolerance(
    state: ClientState, at: datetime, policy: IntakePolicy = DEFAULT_POLICY
) -> RiskTolerance | None:
    """D-05: the tolerance of the assessment valid at ``at`` (None when none is)."""
    assessment = state.client.assessment_at(at)
    if assessment is None or not assessment.valid_at(at, policy):
        return None
    return assessment.level


def risk_level(
    state: ClientState, at: datetime, policy: IntakePolicy = DEFAULT_POLICY
) -> RiskLevel | None:
    """D-09: the risk level at ``at``, from the valid assessment's tolerance."""
    tolerance = risk_tolerance(state, at, policy)
    return None if tolerance is None else policy.risk_levels[tolerance]
