"""D-09, the one home of the rule (``branchline_shared.domain.classification``): lifecycle stage
from a client's facts, the moment it next changes, the risk level of an assessment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_followup.domain import FollowupPolicy
from branchline_shared.domain.classification import (
    RISK_LEVELS,
    LifecycleFacts,
    LifecyclePolicy,
    lifecycle_stage,
    next_stage_change_at,
    risk_level,
    stage_and_next_change,
)
from branchline_shared.events.vocabulary import LifecycleStage, RiskLevel, RiskTolerance

pytestmark = pytest.mark.unit

REGISTERED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
POLICY = LifecyclePolicy()


def onboarded(
    *, days_of_business: int = 0, aum: Decimal = Decimal(0), closed: datetime | None = None
) -> LifecycleFacts:
    first = REGISTERED + timedelta(days=1)
    return LifecycleFacts(
        registered_at=REGISTERED,
        identity_verified_at=REGISTERED,
        first_business_at=first,
        last_business_at=first + timedelta(days=days_of_business),
        assets_under_management=aum,
        account_closed_at=closed,
    )


def stage_at(facts: LifecycleFacts, days_after_registration: float) -> LifecycleStage:
    return lifecycle_stage(facts, REGISTERED + timedelta(days=days_after_registration), POLICY)


def test_d09_prospect_until_identity_verified_and_first_business() -> None:
    only_registered = LifecycleFacts(registered_at=REGISTERED)
    verified = LifecycleFacts(registered_at=REGISTERED, identity_verified_at=REGISTERED)
    business_only = LifecycleFacts(registered_at=REGISTERED, first_business_at=REGISTERED)
    for facts in (only_registered, verified, business_only):
        assert stage_at(facts, 500) is LifecycleStage.PROSPECT
    assert next_stage_change_at(only_registered, REGISTERED, POLICY) is None


def test_d09_new_for_90_days_after_onboarding_then_mature() -> None:
    facts = onboarded(days_of_business=100)
    onboarded_at = REGISTERED + timedelta(days=1)
    assert lifecycle_stage(facts, onboarded_at, POLICY) is LifecycleStage.NEW
    assert (
        lifecycle_stage(facts, onboarded_at + timedelta(days=90, microseconds=-1), POLICY)
        is LifecycleStage.NEW
    )
    assert (
        lifecycle_stage(facts, onboarded_at + timedelta(days=90), POLICY) is LifecycleStage.MATURE
    )
    assert next_stage_change_at(facts, onboarded_at, POLICY) == onboarded_at + timedelta(days=90)


def test_d09_facts_after_now_do_not_count_yet() -> None:
    facts = onboarded()
    assert stage_at(facts, 0.5) is LifecycleStage.PROSPECT  # first business is on day 1


def test_d09_high_net_worth_from_the_aum_threshold() -> None:
    assert stage_at(onboarded(aum=Decimal("5999999.99")), 200) is LifecycleStage.MATURE
    assert stage_at(onboarded(aum=Decimal(6_000_000)), 10) is LifecycleStage.HIGH_NET_WORTH
    lower = LifecyclePolicy(high_net_worth_aum=Decimal(1_000_000))
    facts = onboarded(aum=Decimal(1_000_000))
    assert lifecycle_stage(facts, REGISTERED + timedelta(days=10), lower) is (
        LifecycleStage.HIGH_NET_WORTH
    )


def test_d09_churned_after_365_days_without_business() -> None:
    facts = onboarded(days_of_business=30, aum=Decimal(10_000_000))
    last = REGISTERED + timedelta(days=31)
    assert lifecycle_stage(facts, last + timedelta(days=364), POLICY) is (
        LifecycleStage.HIGH_NET_WORTH
    )
    assert lifecycle_stage(facts, last + timedelta(days=365), POLICY) is LifecycleStage.CHURNED
    assert next_stage_change_at(facts, last, POLICY) == last + timedelta(days=365)
    assert next_stage_change_at(facts, last + timedelta(days=365), POLICY) is None


def test_d09_account_closure_churns_at_once() -> None:
    closed = REGISTERED + timedelta(days=20)
    facts = onboarded(closed=closed)
    assert lifecycle_stage(facts, closed - timedelta(seconds=1), POLICY) is LifecycleStage.NEW
    assert lifecycle_stage(facts, closed, POLICY) is LifecycleStage.CHURNED


def test_d09_facts_refuse_naive_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        LifecycleFacts(registered_at=datetime(2026, 1, 1))


@given(
    days_of_business=st.integers(min_value=0, max_value=800),
    aum=st.decimals(min_value=0, max_value=20_000_000, places=2),
    now_days=st.floats(min_value=0, max_value=2000),
)
def test_d09_the_stage_changes_only_at_the_predicted_instant(
    days_of_business: int, aum: Decimal, now_days: float
) -> None:
    facts = onboarded(days_of_business=days_of_business, aum=aum)
    now = REGISTERED + timedelta(days=now_days)
    change = next_stage_change_at(facts, now, POLICY)
    stage = lifecycle_stage(facts, now, POLICY)
    if change is None:
        assert lifecycle_stage(facts, now + timedelta(days=5000), POLICY) is stage
    else:
        assert change > now
        assert lifecycle_stage(facts, change - timedelta(microseconds=1), POLICY) is stage
        assert lifecycle_stage(facts, change, POLICY) is not stage


def test_d09_followup_s_policy_carries_the_thresholds() -> None:
    # followup passes its FollowupPolicy (built from the lifecycle_* settings) as thresholds.
    followup = FollowupPolicy(new_client_period=timedelta(days=10))
    facts = onboarded(days_of_business=100)
    assert lifecycle_stage(facts, REGISTERED + timedelta(days=12), followup) is (
        LifecycleStage.MATURE
    )
    assert stage_at(facts, 12) is LifecycleStage.NEW


def test_d09_thresholds_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="periods"):
        LifecyclePolicy(new_client_period=timedelta(0))
    with pytest.raises(ValueError, match="high_net_worth_aum"):
        LifecyclePolicy(high_net_worth_aum=Decimal(0))


@pytest.mark.parametrize(
    ("tolerance", "level"),
    [
        (RiskTolerance.C1, RiskLevel.LOW),
        (RiskTolerance.C2, RiskLevel.MEDIUM),
        (RiskTolerance.C3, RiskLevel.MEDIUM),
        (RiskTolerance.C4, RiskLevel.HIGH),
        (RiskTolerance.C5, RiskLevel.VERY_HIGH),
    ],
)
def test_d09_risk_level_of_each_tolerance(tolerance: RiskTolerance, level: RiskLevel) -> None:
    assert risk_level(tolerance) is level
    assert risk_level(tolerance.value) is level  # as the read model stores it


def test_d09_no_risk_level_without_a_tolerance() -> None:
    assert set(RISK_LEVELS) == set(RiskTolerance)
    assert risk_level(None) is None
    assert risk_level("C9") is None


def _stage_then_next_change(
    facts: LifecycleFacts, now: datetime, policy: LifecyclePolicy
) -> tuple[LifecycleStage, datetime | None]:
    """The stage and its next change as they were computed before #12 fused them: the stage
    at ``now``, then each candidate instant tried with :func:`lifecycle_stage` again."""
    stage = lifecycle_stage(facts, now, policy)
    onboarded_at = facts.onboarded_at()
    last_business = facts.last_business_at or facts.first_business_at
    candidates = [
        onboarded_at,
        None if onboarded_at is None else onboarded_at + policy.new_client_period,
        None if last_business is None else last_business + policy.churn_after_inactivity,
        facts.account_closed_at,
    ]
    for moment in sorted(c for c in candidates if c is not None and c > now):
        if lifecycle_stage(facts, moment, policy) is not stage:
            return stage, moment
    return stage, None


_START = datetime(2020, 1, 1, tzinfo=UTC)
_instants = st.builds(
    lambda seconds, hours: (_START + timedelta(seconds=seconds)).astimezone(
        timezone(timedelta(hours=hours))
    ),
    st.integers(min_value=0, max_value=4 * 365 * 86400),
    st.sampled_from([0, 0, -12, -5, 8, 14]),
)
_maybe = st.none() | _instants


@settings(max_examples=400, deadline=None)
@given(
    registered=_instants,
    verified=_maybe,
    first=_maybe,
    last=_maybe,
    closed=_maybe,
    aum=st.sampled_from([Decimal(0), Decimal(5_999_999), Decimal(6_000_000)]),
    now=_instants,
    new_days=st.integers(min_value=1, max_value=400),
    churn_days=st.integers(min_value=1, max_value=800),
)
def test_d09_stage_and_next_change_is_the_stage_and_the_next_change(
    registered: datetime,
    verified: datetime | None,
    first: datetime | None,
    last: datetime | None,
    closed: datetime | None,
    aum: Decimal,
    now: datetime,
    new_days: int,
    churn_days: int,
) -> None:
    # #12: the stage computed once for both answers; the instant returned is the same value
    # in the same offset (UTC: a stage change's cause is named from its isoformat)
    facts = LifecycleFacts(
        registered_at=registered,
        identity_verified_at=verified,
        first_business_at=first,
        last_business_at=last,
        assets_under_management=aum,
        account_closed_at=closed,
    )
    policy = LifecyclePolicy(
        new_client_period=timedelta(days=new_days),
        churn_after_inactivity=timedelta(days=churn_days),
    )

    stage, change = stage_and_next_change(facts, now, policy)
    expected_stage, expected_change = _stage_then_next_change(facts, now, policy)

    assert stage is expected_stage
    assert change == expected_change
    assert next_stage_change_at(facts, now, policy) == expected_change
    if change is not None:
        assert expected_change is not None
        assert change.isoformat() == expected_change.isoformat()
        assert change.tzinfo is UTC


def test_d09_facts_hold_their_instants_in_utc() -> None:
    # an instant already in UTC is kept as it is (#12), one in another offset converted
    in_utc = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    elsewhere = datetime(2026, 3, 1, 17, 0, tzinfo=timezone(timedelta(hours=8)))
    facts = LifecycleFacts(registered_at=in_utc, identity_verified_at=elsewhere)

    assert facts.registered_at is in_utc
    assert facts.identity_verified_at == elsewhere
    assert facts.identity_verified_at is not None
    assert facts.identity_verified_at.tzinfo is UTC
    assert facts.identity_verified_at.isoformat() == "2026-03-01T09:00:00+00:00"
