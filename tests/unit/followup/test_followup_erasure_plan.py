"""D-04 / D-11: when a client's personal data is destroyed after an erasure request."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from branchline_followup.domain.erasure import (
    ErasureCase,
    RetentionRule,
    relationship_ended_at,
    shred_plan,
    years_after,
)
from branchline_shared.events.catalogue import ShredBasis

pytestmark = pytest.mark.unit

REQUESTED = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
RULE = RetentionRule(
    years_by_profile={"default": 10, "us_sec_17a4": 6, "none": 0},
    branch_profiles={"BR-NY": "us_sec_17a4", "BR-X": "none"},
    legal_holds=frozenset({"C-HELD"}),
)


def case(**changes: object) -> ErasureCase:
    values: dict[str, object] = {
        "client_id": "C-1",
        "branch_id": "BR-001",
        "erasure_event_id": uuid.uuid4(),
        "erasure_requested_at": REQUESTED,
        "had_business": True,
        "relationship_ended_at": None,
    }
    values.update(changes)
    return ErasureCase(**values)  # type: ignore[arg-type]


def test_no_business_no_retention_destroyed_at_once() -> None:
    plan = shred_plan(case(had_business=False), RULE)
    assert plan is not None
    assert plan.basis is ShredBasis.NO_RETENTION
    assert plan.due_at == REQUESTED
    assert plan.retention_until is None


def test_a_profile_keeping_nothing_destroys_at_once() -> None:
    plan = shred_plan(case(branch_id="BR-X"), RULE)
    assert plan is not None
    assert plan.basis is ShredBasis.NO_RETENTION


def test_retention_runs_from_the_end_of_the_relationship_never_the_records_dates() -> None:
    assert shred_plan(case(), RULE) is None  # the relationship lasts: not foreseeable yet
    ended = datetime(2027, 3, 1, tzinfo=UTC)
    plan = shred_plan(case(relationship_ended_at=ended), RULE)
    assert plan is not None
    assert plan.basis is ShredBasis.RETENTION_ENDED
    assert plan.due_at == datetime(2037, 3, 1, tzinfo=UTC)
    assert plan.retention_until == plan.due_at
    ny = shred_plan(case(branch_id="BR-NY", relationship_ended_at=ended), RULE)
    assert ny is not None
    assert ny.due_at == datetime(2033, 3, 1, tzinfo=UTC)


def test_erasure_requested_after_retention_ran_out_is_due_at_the_request() -> None:
    ended = datetime(2010, 1, 1, tzinfo=UTC)
    plan = shred_plan(case(relationship_ended_at=ended), RULE)
    assert plan is not None
    assert plan.due_at == REQUESTED


def test_legal_hold_is_never_destroyed() -> None:
    assert shred_plan(case(client_id="C-HELD", had_business=False), RULE) is None
    assert shred_plan(case(legal_hold=True, had_business=False), RULE) is None


def test_end_of_relationship_is_closure_or_churn() -> None:
    now = datetime(2028, 1, 1, tzinfo=UTC)
    churn = timedelta(days=365)
    closed = datetime(2027, 6, 1, tzinfo=UTC)
    last = datetime(2026, 5, 1, tzinfo=UTC)
    assert (
        relationship_ended_at(
            account_closed_at=closed,
            first_business_at=last,
            last_business_at=last,
            churn_after_inactivity=churn,
            now=now,
        )
        == closed
    )
    assert (
        relationship_ended_at(
            account_closed_at=None,
            first_business_at=last,
            last_business_at=last,
            churn_after_inactivity=churn,
            now=now,
        )
        == last + churn
    )
    assert (
        relationship_ended_at(
            account_closed_at=datetime(2029, 1, 1, tzinfo=UTC),  # not yet
            first_business_at=now - timedelta(days=3),
            last_business_at=now - timedelta(days=3),
            churn_after_inactivity=churn,
            now=now,
        )
        is None
    )


def test_years_after_handles_29_february() -> None:
    assert years_after(datetime(2028, 2, 29, tzinfo=UTC), 1) == datetime(2029, 2, 28, tzinfo=UTC)


def test_a_retention_rule_names_known_profiles() -> None:
    with pytest.raises(ValueError, match="no period"):
        RetentionRule(years_by_profile={"default": 10}, branch_profiles={"B": "mars"})
