"""D-01b satisfaction survey after a visit; D-02 appointment preparation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from followup_factories import (
    MONDAY_9,
    RM_ID,
    SCORES,
    TaskBook,
    a_client,
    an_event,
    only_created,
)

from branchline_followup.domain import (
    FollowupPolicy,
    TaskKind,
    TaskRule,
    TaskStatus,
    decide,
)
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import UnreadablePayload, decode

pytestmark = pytest.mark.unit


def closed_visit(
    visit_id: str = "V-1", outcome: str = "normal", at: datetime = MONDAY_9
) -> RecordedEvent:
    data = {"visit_id": visit_id, "outcome": outcome}
    if outcome != "normal":  # the catalogue: an early end states its reason
        data["reason"] = "client left"
    return an_event("visit.closed", data, at=at)


@pytest.mark.parametrize("outcome", ["normal", "left_early", "referred"])
def test_d01b_visit_closed_makes_a_survey_due_in_3_days(outcome: str) -> None:
    event = closed_visit(outcome=outcome)
    task = only_created(decide(decode(event), a_client(), [], FollowupPolicy()))
    assert task.kind is TaskKind.SATISFACTION_SURVEY
    assert task.rule is TaskRule.SATISFACTION_SURVEY
    assert task.due_at == MONDAY_9 + timedelta(days=3)
    assert task.opened_at == MONDAY_9
    assert task.assignee == RM_ID
    assert task.subject == "visit:V-1"
    assert task.source_event_id == event.event_id
    assert task.deadline_profile == "default"
    assert task.branch_id == "BR-001"
    assert task.status is TaskStatus.OPEN


def test_d01b_survey_window_is_configurable() -> None:
    policy = FollowupPolicy(survey_within=timedelta(days=1))
    task = only_created(decide(decode(closed_visit()), a_client(), [], policy))
    assert task.due_at == MONDAY_9 + timedelta(days=1)


def test_d01b_client_without_rm_gets_the_unassigned_queue() -> None:
    task = only_created(decide(decode(closed_visit()), a_client(rm_id=None), [], FollowupPolicy()))
    assert task.assignee == "unassigned"


def test_d01b_survey_answered_for_the_visit_completes_only_that_survey() -> None:
    book = TaskBook()
    book.feed(closed_visit("V-1"))
    book.feed(closed_visit("V-2"))
    answered_at = MONDAY_9 + timedelta(days=2)
    book.feed(
        an_event(
            "feedback.survey_answered",
            {"visit_id": "V-1", "scores": SCORES},
            at=answered_at,
        )
    )
    v1, v2 = book.of_kind(TaskKind.SATISFACTION_SURVEY)
    assert v1.subject == "visit:V-1"
    assert v1.status is TaskStatus.DONE
    assert v1.closed_at == answered_at
    assert v1.met_deadline()
    assert v2.status is TaskStatus.OPEN


def test_d01b_survey_without_visit_id_completes_every_open_survey_of_the_client() -> None:
    book = TaskBook()
    book.feed(closed_visit("V-1"))
    book.feed(closed_visit("V-2"))
    book.feed(
        an_event("feedback.survey_answered", {"scores": SCORES}, at=MONDAY_9 + timedelta(days=4))
    )
    surveys = book.of_kind(TaskKind.SATISFACTION_SURVEY)
    assert [t.status for t in surveys] == [TaskStatus.DONE, TaskStatus.DONE]
    assert not any(t.met_deadline() for t in surveys)  # answered after the 3 days


def test_d01b_survey_of_another_client_is_not_touched() -> None:
    book = TaskBook()
    book.feed(closed_visit("V-1"))
    other = an_event(
        "feedback.survey_answered", {"visit_id": "V-1", "scores": SCORES}, client_id="C-other"
    )
    assert (
        decide(decode(other), a_client(client_id="C-other"), list(book.tasks.values()), book.policy)
        == ()
    )


def test_d01b_visit_closed_without_visit_id_is_invalid_data() -> None:
    event = an_event("visit.closed", {"outcome": "normal"})
    # refused where the event is received, decoded once (#12), before any rule reads it
    with pytest.raises(UnreadablePayload, match="visit_id") as caught:
        decode(event)
    assert caught.value.field == "visit_id"


def booked(
    slot_start: str | None = "2026-11-25T14:00:00+08:00", appointment_id: str = "A-1"
) -> RecordedEvent:
    return an_event(
        "appointment.booked",
        {
            "appointment_id": appointment_id,
            "slot_start": slot_start,
            "purpose": "wealth review",
            "staff_id": "staff-42",
        },
    )


def test_d02_booking_makes_preparation_due_one_hour_before_the_slot_for_the_staff() -> None:
    task = only_created(decide(decode(booked()), a_client(), [], FollowupPolicy()))
    assert task.kind is TaskKind.APPOINTMENT_PREPARATION
    assert task.rule is TaskRule.APPOINTMENT
    assert task.due_at == datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 14:00+08 - 1 h
    assert task.assignee == "staff-42"
    assert task.subject == "appointment:A-1"


def test_d02_preparation_lead_is_configurable() -> None:
    policy = FollowupPolicy(appointment_preparation_lead=timedelta(hours=24))
    task = only_created(decide(decode(booked()), a_client(), [], policy))
    assert task.due_at == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def test_d02_attended_completes_the_preparation() -> None:
    book = TaskBook()
    book.feed(booked())
    attended_at = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    book.feed(an_event("appointment.attended", {"appointment_id": "A-1"}, at=attended_at))
    task = book.one(TaskKind.APPOINTMENT_PREPARATION)
    assert task.status is TaskStatus.DONE
    assert task.closed_at == attended_at


@pytest.mark.parametrize("event_type", ["appointment.cancelled", "appointment.no_show"])
def test_d02_cancelled_or_no_show_cancels_the_preparation(event_type: str) -> None:
    book = TaskBook()
    book.feed(booked())
    book.feed(booked(appointment_id="A-2"))
    book.feed(an_event(event_type, {"appointment_id": "A-1"}))
    first, second = book.of_kind(TaskKind.APPOINTMENT_PREPARATION)
    by_subject = {t.subject: t for t in (first, second)}
    assert by_subject["appointment:A-1"].status is TaskStatus.CANCELLED
    assert by_subject["appointment:A-2"].status is TaskStatus.OPEN


def test_d02_confirmation_changes_nothing() -> None:
    book = TaskBook()
    book.feed(booked())
    assert book.feed(an_event("appointment.confirmed", {"appointment_id": "A-1"})) == ()
    assert book.one(TaskKind.APPOINTMENT_PREPARATION).is_open


@pytest.mark.parametrize("slot_start", ["2026-11-25T14:00:00", "tomorrow", None])
def test_d02_slot_start_must_be_a_time_with_an_offset(slot_start: str | None) -> None:
    # refused where the event is received, decoded once (#12), before any rule reads it
    with pytest.raises(UnreadablePayload, match="slot_start"):
        decode(booked(slot_start=slot_start))
