"""ClientFacts.stage_at answers as D-09's two functions do, for every client (#12): its
shortcut for a never-onboarded open client must not change a stage or a stage timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_followup.domain.records import ClientFacts
from branchline_shared.domain.classification import (
    LifecyclePolicy,
    lifecycle_stage,
    next_stage_change_at,
)
from branchline_shared.events.vocabulary import LifecycleStage

START = datetime(2020, 1, 1, tzinfo=UTC)

instants = st.builds(
    lambda seconds, hours: (START + timedelta(seconds=seconds)).astimezone(
        timezone(timedelta(hours=hours))
    ),
    st.integers(min_value=0, max_value=4 * 365 * 86400),
    st.integers(min_value=-12, max_value=14),
)
maybe = st.none() | instants
policies = st.builds(
    LifecyclePolicy,
    new_client_period=st.integers(1, 400).map(lambda d: timedelta(days=d)),
    churn_after_inactivity=st.integers(1, 800).map(lambda d: timedelta(days=d)),
    high_net_worth_aum=st.integers(1, 10_000_000).map(Decimal),
)
clients = st.builds(
    ClientFacts,
    client_id=st.just("C-1"),
    client_type=st.just("individual"),
    rm_id=st.just("rm-1"),
    branch_id=st.none(),
    lifecycle_stage=st.sampled_from([s.value for s in LifecycleStage]),
    registered_at=instants,
    last_event_at=instants,
    identity_verified_at=maybe,
    first_business_at=maybe,
    last_business_at=maybe,
    assets_under_management=st.integers(0, 10_000_000).map(Decimal),
    account_closed_at=maybe,
    stage_changes_at=maybe,
)


@settings(max_examples=400, deadline=None)
@given(facts=clients, at=instants, policy=policies)
def test_stage_at_is_d09s_stage_and_next_change(
    facts: ClientFacts, at: datetime, policy: LifecyclePolicy
) -> None:
    lifecycle = facts.lifecycle()

    assert facts.stage_at(at, policy) == (
        lifecycle_stage(lifecycle, at, policy),
        next_stage_change_at(lifecycle, at, policy),
    )


def test_a_never_onboarded_open_client_is_a_prospect_with_no_stage_timer() -> None:
    # verified but no business yet, with a business date whose inactivity limit lies ahead:
    # the shortcut's case, whatever the stored stage and timer say
    facts = ClientFacts(
        client_id="C-1",
        client_type="individual",
        rm_id="rm-1",
        branch_id=None,
        lifecycle_stage=LifecycleStage.MATURE.value,
        registered_at=START,
        last_event_at=START,
        identity_verified_at=START,
        last_business_at=START,
        stage_changes_at=START + timedelta(days=1),
    )

    assert facts.stage_at(START + timedelta(days=2), LifecyclePolicy()) == (
        LifecycleStage.PROSPECT,
        None,
    )
