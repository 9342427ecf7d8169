"""D-16 accepted gifts escalate; D-14 training shortfalls are a D-12 measure."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from followup_factories import BRANCH_ID, CLIENT_ID, MONDAY_9, a_client

from branchline_followup.domain import FollowupPolicy, TaskKind
from branchline_followup.domain.conflicts import gift_escalation
from branchline_followup.domain.quality import TrainingRecord, training_shortfalls
from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.events.typed import decode

pytestmark = pytest.mark.unit

POLICY = FollowupPolicy(supervisors={"rm-7": "sup-1"})


def gift(value: str, *, accepted: bool, staff_id: str = "rm-7") -> RecordedEvent:
    data: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "value": value,
        "accepted": accepted,
        "description": "tea set",
    }
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type="staff.gift_recorded",
        occurred_at=MONDAY_9,
        recorded_at=MONDAY_9,
        source="test",
        actor=Actor(id="admin-1", role="admin"),
        staff_id=staff_id,
        stream_id=f"staff-{staff_id}",
        stream_version=1,
        data=data,
    )


def test_d16_an_accepted_gift_escalates_to_the_supervisor() -> None:
    event = gift("200", accepted=True)

    (command,) = gift_escalation(decode(event), a_client(), POLICY)

    task = command.task
    assert task.kind is TaskKind.GIFT_ESCALATION
    assert task.rule.value == "D-16"
    assert task.assignee == "sup-1"
    assert task.client_id == CLIENT_ID
    assert task.branch_id == BRANCH_ID
    assert task.subject == "staff:rm-7"
    assert task.due_at == MONDAY_9 + POLICY.gift_escalation_within
    assert task.source_event_id == event.event_id


@pytest.mark.parametrize(
    ("value", "accepted", "threshold", "escalates"),
    [
        ("200", False, "0", False),  # declined: allowed
        ("0", True, "0", False),  # nothing of value
        ("0.01", True, "0", True),
        ("100", True, "100", False),  # within an institution's threshold
        ("100.01", True, "100", True),
    ],
)
def test_d16_only_an_accepted_gift_above_the_threshold_escalates(
    value: str, accepted: bool, threshold: str, escalates: bool
) -> None:
    policy = replace(POLICY, gift_accept_threshold=Decimal(threshold))

    made = gift_escalation(decode(gift(value, accepted=accepted)), a_client(), policy)

    assert bool(made) is escalates


def test_d16_a_supervisors_own_gift_goes_to_the_default_supervisor() -> None:
    (command,) = gift_escalation(
        decode(gift("50", accepted=True, staff_id="sup-1")), a_client(), POLICY
    )

    assert command.task.assignee == POLICY.default_supervisor_id


START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)  # 365 days: the whole reference


def hours(staff_id: str, amount: str, at: datetime = START + timedelta(days=30)) -> TrainingRecord:
    return TrainingRecord(staff_id, Decimal(amount), at)


def test_d14_staff_below_the_reference_are_short_by_what_they_miss() -> None:
    records = [
        hours("rm-1", "25"),
        hours("rm-1", "15"),  # 40: enough
        hours("rm-2", "39.5"),
        hours("rm-3", "50", at=END),  # after the period
    ]

    measure = training_shortfalls(
        ["rm-1", "rm-2", "rm-3"], records, start=START, end=END, hours_per_year=Decimal(40)
    )

    assert measure.required_hours == 40
    assert measure.staff == 3
    assert measure.short == 2
    assert [(s.staff_id, s.hours, s.missing) for s in measure.shortfalls] == [
        ("rm-2", 39.5, 0.5),
        ("rm-3", 0.0, 40.0),
    ]


@pytest.mark.parametrize(("days", "required", "short"), [(73, 8.0, 0), (365, 40.0, 1), (0, 0.0, 0)])
def test_d14_the_requirement_is_pro_rata_over_the_period(
    days: int, required: float, short: int
) -> None:
    measure = training_shortfalls(
        ["rm-1"],
        [hours("rm-1", "8")],
        start=START,
        end=START + timedelta(days=days),
        hours_per_year=Decimal(40),
    )

    assert measure.required_hours == required
    assert measure.short == short
