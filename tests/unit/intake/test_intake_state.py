"""The state: built only by applying events; replay; the event value; policy; refusal records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from intake_story import (
    T0,
    Story,
    arrived,
    as_stream,
    booked,
    closed,
    consent,
    late_approval,
    opened,
    personal_data,
    received,
    refused,
    registered,
    screened,
    sold,
    verified,
)
from pydantic import ValidationError

from branchline_intake.domain import (
    ClientState,
    DomainEvent,
    IntakePolicy,
    RuleViolation,
    add_months,
    rebuild,
    rebuild_from_recorded,
    refusal_payload,
)
from branchline_intake.domain.recorded import RecordedDecider
from branchline_intake.domain.state import NO_EVENTS
from branchline_shared.events.catalogue import (
    ClientRegistered,
    ClientType,
    ConsentPurpose,
    VisitArrived,
)
from branchline_shared.events.envelope import Actor, SubmittedEvent
from branchline_shared.events.personal_data import REDACTED

pytestmark = pytest.mark.unit


def test_empty_state_knows_no_client() -> None:
    state = ClientState()

    assert state.version == 0
    assert not state.client.registered


def test_apply_counts_the_version_and_leaves_the_old_state_alone() -> None:
    before = Story().given(registered()).state
    after = before.apply(Story().event(arrived()))

    assert (before.version, after.version) == (1, 2)
    assert "V-1" not in before.visits
    assert "V-1" in after.visits


def test_apply_never_refuses_an_event_the_rules_would_refuse() -> None:
    state = ClientState().apply(Story().event(closed("V-unknown")))

    assert state.version == 1
    assert state.visits == {}


def test_rebuild_replays_the_history_to_the_same_state() -> None:
    story = Story().given(
        registered(), verified(), screened(), consent(), personal_data(), arrived()
    )

    assert rebuild(story.history) == story.state


def test_rebuild_from_recorded_parses_stored_payloads() -> None:
    story = Story().onboarded().ready_to_sell()
    story.given(sold(amount="1234.5"))
    recorded = as_stream(story.history)

    assert rebuild_from_recorded(recorded) == story.state
    assert story.state.activity.assets_under_management == Decimal("1234.5")


def test_domain_event_refuses_a_payload_of_another_type() -> None:
    with pytest.raises(ValueError, match="is not of type"):
        DomainEvent(uuid.uuid4(), "visit.closed", T0, VisitArrived(visit_id="V-1"))


def test_domain_event_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="offset"):
        DomainEvent.of(registered(), datetime(2026, 1, 1), event_id=uuid.uuid4())


def test_domain_event_from_submitted_keeps_the_idempotency_key() -> None:
    key, fallback = uuid.uuid4(), uuid.uuid4()
    submitted = SubmittedEvent(
        event_id=key,
        type="client.registered",
        occurred_at=T0,
        client_id="C-1",
        branch_id="BR-1",
        actor=Actor(id="rm-1", role="rm"),
        data={"client_type": "corporate", "rm_id": "rm-1"},
    )

    event = DomainEvent.from_submitted(submitted, fallback_event_id=fallback)

    assert event.event_id == key
    assert event.payload == ClientRegistered(client_type=ClientType.CORPORATE, rm_id="rm-1")
    anonymous = submitted.model_copy(update={"event_id": None})
    assert DomainEvent.from_submitted(anonymous, fallback_event_id=fallback).event_id == fallback


def test_domain_event_from_submitted_refuses_invalid_data() -> None:
    submitted = SubmittedEvent(
        type="client.registered",
        occurred_at=T0,
        client_id="C-1",
        actor=Actor(id="rm-1", role="rm"),
        data={"client_type": "alien"},
    )

    with pytest.raises(ValidationError):
        DomainEvent.from_submitted(submitted, fallback_event_id=uuid.uuid4())


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (datetime(2026, 1, 31, tzinfo=UTC), 1, datetime(2026, 2, 28, tzinfo=UTC)),
        (datetime(2028, 1, 31, tzinfo=UTC), 1, datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2026, 11, 22, 9, tzinfo=UTC), 12, datetime(2027, 11, 22, 9, tzinfo=UTC)),
        (datetime(2026, 12, 15, tzinfo=UTC), 1, datetime(2027, 1, 15, tzinfo=UTC)),
    ],
)
def test_add_months_clamps_to_the_end_of_the_month(
    start: datetime, months: int, end: datetime
) -> None:
    assert add_months(start, months) == end


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="assessment_validity_months"):
        IntakePolicy(assessment_validity_months=0)


def test_d04_refusal_record_withholds_the_refused_personal_data() -> None:
    story = Story().given(registered())
    violation = refused(story.when(personal_data()), "D-04")
    submitted = SubmittedEvent(
        type="client.personal_data_recorded",
        occurred_at=T0,
        client_id="C-1",
        branch_id="BR-1",
        actor=Actor(id="staff-1", role="teller"),
        data={"fields": {"name": "Wang Fang", "phone": "138"}, "purpose": "service"},
    )
    caller = Actor(id="branch-system", role="branch_system")
    event_id = uuid.uuid4()

    payload = refusal_payload(violation, submitted, submitted_by=caller, event_id=event_id)

    assert payload.rule == "D-04"
    assert payload.title == violation.title
    assert payload.submitted_by == caller
    assert payload.refused_event.event_id == event_id
    assert payload.refused_event.data == {
        "fields": {"name": REDACTED, "phone": REDACTED},
        "purpose": "service",
    }
    assert "Wang" not in payload.model_dump_json()


def test_refusal_record_keeps_ordinary_data() -> None:
    violation = RuleViolation(
        rule="D-01", title="Unknown visit", detail="V-9", field="data.visit_id"
    )
    submitted = SubmittedEvent(
        type="visit.closed",
        occurred_at=T0,
        client_id="C-1",
        actor=Actor(id="staff-1", role="teller"),
        data={"visit_id": "V-9", "outcome": "normal"},
    )

    payload = refusal_payload(violation, submitted, submitted_by=submitted.actor)

    assert payload.refused_event.data == submitted.data
    assert payload.field == "data.visit_id"


def test_the_shared_empty_state_is_a_new_empty_state_and_stays_one() -> None:
    """A new client's state is one shared value (#12), not made afresh per event: it must be
    ``ClientState()`` and no fold may change it."""
    story = Story()
    events = [
        story.event(p)
        for p in (
            registered(),
            verified(),
            screened(),
            consent(),
            personal_data(),
            arrived(),
            booked(),
            opened(),
            received(),
            late_approval(uuid.uuid4()),
        )
    ]
    fresh = ClientState()
    for event in events:
        fresh = fresh.apply(event)

    assert ClientState() == NO_EVENTS
    assert rebuild(events) == fresh
    assert RecordedDecider().state_of([]) is NO_EVENTS
    assert ClientState() == NO_EVENTS  # left as it was by every fold above
    with pytest.raises(TypeError):
        NO_EVENTS.visits["V-1"] = fresh.visits["V-1"]  # type: ignore[index]
    with pytest.raises(TypeError):
        NO_EVENTS.client.consents[ConsentPurpose.SERVICE] = ()  # type: ignore[index]
