"""Durable timers (ADR-0008): overdue at due, escalation to the supervisor (D-08) 24 h later."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

import pytest
from followup_factories import MONDAY_9, RM_ID, a_client, an_event, only_created

from branchline_followup.domain import (
    FOLLOWUP_ESCALATED,
    FOLLOWUP_OVERDUE,
    FollowupPolicy,
    FollowupTask,
    TaskStatus,
    TimerKind,
    decide,
    mark_escalated,
    on_timer_fired,
    timers_for,
)
from branchline_shared.events.typed import decode

pytestmark = pytest.mark.unit

POLICY = FollowupPolicy(supervisors=MappingProxyType({RM_ID: "sup-3"}))


def survey_task() -> FollowupTask:
    event = an_event("visit.closed", {"visit_id": "V-1", "outcome": "normal"})
    return only_created(decide(decode(event), a_client(), [], POLICY))


def test_d08_open_task_has_an_overdue_and_an_escalation_timer() -> None:
    task = survey_task()
    overdue, escalate = timers_for(task, POLICY)
    assert (overdue.kind, overdue.fire_at, overdue.task_id) == (
        TimerKind.OVERDUE,
        task.due_at,
        task.id,
    )
    assert (escalate.kind, escalate.fire_at) == (TimerKind.ESCALATE, task.due_at + timedelta(1))
    assert timers_for(task, POLICY) == (overdue, escalate)  # stable ids: re-planning upserts


def test_d08_escalation_delay_is_configurable_and_can_be_off() -> None:
    task = survey_task()
    policy = FollowupPolicy(escalate_after=timedelta(hours=2))
    assert timers_for(task, policy)[1].fire_at == task.due_at + timedelta(hours=2)
    off = FollowupPolicy(escalate_after=None)
    assert [t.kind for t in timers_for(task, off)] == [TimerKind.OVERDUE]
    assert on_timer_fired(task, TimerKind.ESCALATE, task.due_at + timedelta(days=9), off) is None


@pytest.mark.parametrize("status", [TaskStatus.DONE, TaskStatus.CANCELLED])
def test_closed_task_needs_no_timers_and_fires_nothing(status: TaskStatus) -> None:
    task = survey_task().model_copy(update={"status": status, "closed_at": MONDAY_9})
    assert timers_for(task, POLICY) == ()
    late = task.due_at + timedelta(days=5)
    assert on_timer_fired(task, TimerKind.OVERDUE, late, POLICY) is None
    assert on_timer_fired(task, TimerKind.ESCALATE, late, POLICY) is None


def test_overdue_timer_emits_followup_overdue_with_task_id_and_due_at() -> None:
    task = survey_task()
    event = on_timer_fired(task, TimerKind.OVERDUE, task.due_at, POLICY)
    assert event is not None
    assert event.type == FOLLOWUP_OVERDUE
    assert event.data == {"task_id": str(task.id), "due_at": task.due_at.isoformat()}
    assert event.client_id == task.client_id
    assert event.branch_id == task.branch_id
    assert event.occurred_at == task.due_at
    # fired again (a retry, or late): the same event id, so it is recorded once
    again = on_timer_fired(task, TimerKind.OVERDUE, task.due_at + timedelta(hours=5), POLICY)
    assert again == event


def test_timer_before_its_time_is_stale_and_fires_nothing() -> None:
    task = survey_task()
    early = task.due_at - timedelta(microseconds=1)
    assert on_timer_fired(task, TimerKind.OVERDUE, early, POLICY) is None
    rescheduled = task.model_copy(update={"due_at": task.due_at + timedelta(days=2)})
    assert on_timer_fired(rescheduled, TimerKind.OVERDUE, task.due_at, POLICY) is None
    moved = on_timer_fired(rescheduled, TimerKind.OVERDUE, rescheduled.due_at, POLICY)
    first = on_timer_fired(task, TimerKind.OVERDUE, task.due_at, POLICY)
    assert moved is not None
    assert first is not None
    assert moved.event_id != first.event_id


def test_d08_escalation_goes_to_the_rms_supervisor_24h_after_due() -> None:
    task = survey_task()
    assert (
        on_timer_fired(task, TimerKind.ESCALATE, task.due_at + timedelta(hours=23), POLICY) is None
    )
    event = on_timer_fired(task, TimerKind.ESCALATE, task.due_at + timedelta(hours=24), POLICY)
    assert event is not None
    assert event.type == FOLLOWUP_ESCALATED
    assert event.data == {"task_id": str(task.id), "supervisor_id": "sup-3"}
    assert event.occurred_at == task.due_at + timedelta(hours=24)


def test_d08_escalation_of_staff_without_supervisor_goes_to_the_default_supervisor() -> None:
    task = survey_task().model_copy(update={"assignee": "staff-unknown"})
    event = on_timer_fired(task, TimerKind.ESCALATE, task.due_at + timedelta(days=2), POLICY)
    assert event is not None
    assert event.data["supervisor_id"] == "supervisor"


def test_d08_a_supervisors_own_task_escalates_to_the_default_supervisor() -> None:
    policy = FollowupPolicy(
        supervisors=MappingProxyType({"sup-3": "sup-3"}), default_supervisor_id="head-office"
    )
    task = survey_task().model_copy(update={"assignee": "sup-3"})
    event = on_timer_fired(task, TimerKind.ESCALATE, task.due_at + timedelta(days=2), policy)
    assert event is not None
    assert event.data["supervisor_id"] == "head-office"


def test_d08_a_task_escalates_once() -> None:
    task = mark_escalated(survey_task(), "sup-3")
    assert task.escalated_to == "sup-3"
    assert [t.kind for t in timers_for(task, POLICY)] == [TimerKind.OVERDUE]
    assert on_timer_fired(task, TimerKind.ESCALATE, task.due_at + timedelta(days=2), POLICY) is None


def test_timer_refuses_a_naive_now() -> None:
    task = survey_task()
    with pytest.raises(ValueError, match="naive"):
        on_timer_fired(task, TimerKind.OVERDUE, task.due_at.replace(tzinfo=None), POLICY)
