"""D-09 classification of intake's client state: the facts intake's events give (business,
identity, sales, closure) through the one rule, ``branchline_shared.domain.classification``."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from intake_story import (
    Story,
    arrived,
    assessed,
    closed,
    days,
    handled,
    lifecycle_facts,
    needs,
    registered,
    screened,
    sold,
    verified,
)

from branchline_intake.domain import DEFAULT_POLICY, ClientState
from branchline_shared.domain.classification import LifecyclePolicy, LifecycleThresholds, risk_level
from branchline_shared.domain.classification import lifecycle_stage as stage_of
from branchline_shared.events.catalogue import (
    ClientType,
    LifecycleStage,
    RiskLevel,
    RiskTolerance,
    VisitCategory,
)

pytestmark = pytest.mark.unit


DEFAULT_THRESHOLDS = LifecyclePolicy()


def lifecycle_stage(
    state: ClientState, at: datetime, policy: LifecycleThresholds = DEFAULT_THRESHOLDS
) -> LifecycleStage:
    return stage_of(lifecycle_facts(state), at, policy)


def assessed_risk_level(state: ClientState, at: datetime) -> RiskLevel | None:
    """D-09 risk level of the assessment valid at ``at`` (D-05 validity)."""
    assessment = state.client.assessment_at(at)
    if assessment is None or not assessment.valid_at(at, DEFAULT_POLICY):
        return None
    return risk_level(assessment.level)


def _with_business(story: Story, at_day: float) -> Story:
    visit_id = f"V-{at_day}"
    story.given(arrived(visit_id), needs(VisitCategory.DEPOSIT, visit_id))
    return story.given(handled(visit_id), at=days(at_day)).given(closed(visit_id))


def _onboarded_on_day_1() -> Story:
    story = Story().given(registered(ClientType.CORPORATE), verified(), screened())
    return _with_business(story, 1)


def test_d09_registered_client_is_a_prospect() -> None:
    story = Story().given(registered())

    assert lifecycle_stage(story.state, days(10)) is LifecycleStage.PROSPECT


def test_d09_business_without_identity_keeps_a_prospect() -> None:
    story = _with_business(Story().given(registered()), 1)

    assert lifecycle_stage(story.state, days(2)) is LifecycleStage.PROSPECT


def test_d09_onboarded_client_is_new_for_90_days_then_mature() -> None:
    state = _onboarded_on_day_1().state

    assert lifecycle_stage(state, days(1)) is LifecycleStage.NEW
    assert lifecycle_stage(state, days(91) - timedelta(seconds=1)) is LifecycleStage.NEW
    assert lifecycle_stage(state, days(91)) is LifecycleStage.MATURE


def test_d09_no_business_for_365_days_is_churned() -> None:
    state = _onboarded_on_day_1().state

    assert lifecycle_stage(state, days(366) - timedelta(seconds=1)) is LifecycleStage.MATURE
    assert lifecycle_stage(state, days(366)) is LifecycleStage.CHURNED


def test_d09_new_business_revives_a_churned_client() -> None:
    story = _with_business(_onboarded_on_day_1(), 400)

    assert lifecycle_stage(story.state, days(401)) is LifecycleStage.MATURE


def test_d09_sales_reaching_the_threshold_make_high_net_worth() -> None:
    story = Story().given(registered(), verified(), screened(), assessed(RiskTolerance.C3))
    story.ready_to_sell().given(sold(amount="5999999"))
    assert lifecycle_stage(story.state, story.now) is LifecycleStage.NEW
    story.ready_to_sell().given(sold(amount="1"))

    assert lifecycle_stage(story.state, story.now) is LifecycleStage.HIGH_NET_WORTH
    assert story.state.activity.assets_under_management == Decimal(6_000_000)


def test_d09_thresholds_come_from_the_policy() -> None:
    policy = LifecyclePolicy(new_client_period=timedelta(days=10))
    state = _onboarded_on_day_1().state

    assert lifecycle_stage(state, days(12), policy) is LifecycleStage.MATURE


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
def test_d09_risk_level_from_the_valid_assessment(
    tolerance: RiskTolerance, level: RiskLevel
) -> None:
    story = Story().given(registered(), assessed(tolerance))

    assert assessed_risk_level(story.state, story.now) is level


def test_d09_no_risk_level_without_a_valid_assessment() -> None:
    story = Story().given(registered(), assessed(RiskTolerance.C3, valid_until=days(5)))

    assert assessed_risk_level(story.state, days(6)) is None


def test_d09_the_registered_type_and_rm_are_the_classification_s_own() -> None:
    story = _onboarded_on_day_1().given(assessed(RiskTolerance.C4))

    assert story.state.client.client_type is ClientType.CORPORATE
    assert story.state.client.rm_id == "rm-42"
    assert lifecycle_stage(story.state, days(2)) is LifecycleStage.NEW
    assert assessed_risk_level(story.state, days(2)) is RiskLevel.HIGH
