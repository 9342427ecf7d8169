"""D-09: the client register: nothing happens to a client before client.registered."""

from __future__ import annotations

import pytest
from intake_story import (
    Story,
    accepted,
    arrived,
    booked,
    consent,
    opened,
    received,
    recommended,
    refused,
    registered,
    verified,
)

from branchline_shared.events import catalogue as c
from branchline_shared.events.envelope import Actor

pytestmark = pytest.mark.unit


def test_d09_first_registration_is_accepted() -> None:
    story = Story()

    event = accepted(story.when(registered(c.ClientType.CORPORATE)))

    assert event.type == "client.registered"


def test_d09_second_registration_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(registered()), "D-09")

    assert violation.title == "Client already registered"


@pytest.mark.parametrize(
    "payload",
    [consent(), verified(), arrived(), booked(), opened(), recommended(), received()],
    ids=lambda p: type(p).__name__,
)
def test_d09_event_of_unregistered_client_is_refused(payload: c.EventPayload) -> None:
    story = Story()

    violation = refused(story.when(payload), "D-09")

    assert violation.title == "Unknown client"
    assert violation.field == "client_id"


def test_d09_refusal_record_of_unregistered_client_is_accepted() -> None:
    refusal = c.RuleViolationRefused(
        rule="D-09",
        title="Unknown client",
        detail="visit.arrived needs a registered client",
        refused_event=c.RefusedEvent(
            type="visit.arrived",
            occurred_at=Story().now,
            client_id="C-1",
            actor=Actor(id="staff-1", role="teller"),
            data={"visit_id": "V-1"},
        ),
        submitted_by=Actor(id="branch-system", role="branch_system"),
    )

    accepted(Story().when(refusal))


def test_d09_followup_event_of_registered_client_is_accepted() -> None:
    story = Story().given(registered())
    overdue = c.FollowupOverdue(task_id="T-1", due_at=story.now)

    accepted(story.when(overdue))
