"""Tasks: deterministic ids, SLA state boundaries, command semantics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from followup_factories import MONDAY_9, TaskBook, a_client, an_event, created, only_created

from branchline_followup.application.task_creations import task_created_event_id
from branchline_followup.domain import (
    CancelTask,
    CompleteTask,
    CreateTask,
    FollowupPolicy,
    FollowupTask,
    ReassignTask,
    RescheduleTask,
    SlaState,
    TaskKind,
    TaskRule,
    TaskStatus,
    apply_command,
    apply_commands,
    decide,
    sla_state,
    task_id_for,
)
from branchline_followup.domain.opening import earlier, later, reschedule
from branchline_followup.domain.tasks import REMEMBERED_IDS, new_task
from branchline_shared.events.typed import decode

pytestmark = pytest.mark.unit

WINDOW = timedelta(hours=4)


def a_task(due_at: datetime = MONDAY_9 + timedelta(days=1), **changes: object) -> FollowupTask:
    task = new_task(
        kind=TaskKind.SATISFACTION_SURVEY,
        source_event_id=uuid.UUID(int=1),
        client_id="C-1",
        branch_id="BR-1",
        assignee="rm-1",
        subject="visit:V-1",
        opened_at=MONDAY_9,
        due_at=due_at,
        deadline_profile="default",
    )
    return task.model_copy(update=changes)


def test_task_id_is_uuid5_of_source_event_and_kind() -> None:
    source = uuid.uuid4()
    assert task_id_for(source, TaskKind.REVISIT) == task_id_for(source, TaskKind.REVISIT)
    assert task_id_for(source, TaskKind.REVISIT).version == 5
    assert task_id_for(source, TaskKind.REVISIT) != task_id_for(source, TaskKind.WIN_BACK)
    assert task_id_for(source, TaskKind.REVISIT) != task_id_for(uuid.uuid4(), TaskKind.REVISIT)


def test_derived_task_ids_a_process_keeps_are_bounded() -> None:
    """The worker derives ids for every task it makes, for its whole life: what it remembers
    of them stays within a few thousand (#12: 32,768 of each held 18.6 MB)."""
    task_id_for.cache_clear()
    task_created_event_id.cache_clear()
    for _ in range(REMEMBERED_IDS + 500):
        task_created_event_id(task_id_for(uuid.uuid4(), TaskKind.REVISIT))
    assert REMEMBERED_IDS <= 4096
    assert task_id_for.cache_info().currsize == REMEMBERED_IDS
    assert task_created_event_id.cache_info().currsize == REMEMBERED_IDS
    source = uuid.uuid4()  # still the same id, remembered or derived again
    first = task_id_for(source, TaskKind.REVISIT)
    task_id_for.cache_clear()
    assert task_id_for(source, TaskKind.REVISIT) == first


def test_d01b_same_event_twice_gives_the_same_task_id_and_one_task() -> None:
    book = TaskBook()
    event = an_event("visit.closed", {"visit_id": "V-1", "outcome": "normal"})
    first = book.feed(event)
    again = book.feed(event)  # redelivery
    assert first == again
    assert len(book.tasks) == 1
    assert only_created(first).id == task_id_for(event.event_id, TaskKind.SATISFACTION_SURVEY)


def test_d07_one_event_never_makes_two_tasks_with_one_id() -> None:
    event = an_event(
        "complaint.received", {"complaint_id": "K-1", "severity": "urgent", "summary": "x"}
    )
    tasks = created(decide(decode(event), a_client(), [], FollowupPolicy()))
    assert len(tasks) == 2
    assert len({t.id for t in tasks}) == len(tasks)


def test_task_times_are_normalised_to_utc() -> None:
    shanghai = timezone(timedelta(hours=8))
    task = a_task(due_at=datetime(2026, 11, 24, 17, 0, tzinfo=shanghai))
    assert task.due_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert task.due_at.tzinfo is UTC
    assert task.rule is TaskRule.SATISFACTION_SURVEY


def test_task_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone"):
        a_task(due_at=datetime(2026, 11, 24, 9, 0))
    with pytest.raises(ValueError, match="timezone"):
        FollowupTask.model_validate(
            a_task().model_dump() | {"opened_at": datetime(2026, 11, 24, 9, 0)}
        )


@pytest.mark.parametrize(
    ("before_due", "expected"),
    [
        (WINDOW + timedelta(microseconds=1), SlaState.ON_TRACK),
        (WINDOW, SlaState.DUE_SOON),
        (timedelta(microseconds=1), SlaState.DUE_SOON),
        (timedelta(0), SlaState.OVERDUE),
        (-timedelta(days=3), SlaState.OVERDUE),
    ],
)
def test_sla_state_boundaries(before_due: timedelta, expected: SlaState) -> None:
    task = a_task()
    assert sla_state(task, task.due_at - before_due, WINDOW) is expected


@pytest.mark.parametrize("status", [TaskStatus.DONE, TaskStatus.CANCELLED])
def test_sla_state_of_a_closed_task_is_done_even_after_due(status: TaskStatus) -> None:
    task = a_task(status=status, closed_at=MONDAY_9)
    assert sla_state(task, task.due_at + timedelta(days=30), WINDOW) is SlaState.DONE


def test_sla_state_with_zero_window_is_never_due_soon() -> None:
    task = a_task()
    assert sla_state(task, task.due_at - timedelta(microseconds=1), timedelta(0)) is (
        SlaState.ON_TRACK
    )


def test_sla_state_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="naive"):
        sla_state(a_task(), datetime(2026, 11, 24), WINDOW)


def test_met_deadline_counts_completion_at_the_due_instant_as_on_time() -> None:
    task = a_task()
    assert task.model_copy(
        update={"status": TaskStatus.DONE, "closed_at": task.due_at}
    ).met_deadline()
    late = task.due_at + timedelta(microseconds=1)
    assert not task.model_copy(update={"status": TaskStatus.DONE, "closed_at": late}).met_deadline()
    assert not task.model_copy(
        update={"status": TaskStatus.CANCELLED, "closed_at": MONDAY_9}
    ).met_deadline()


def test_commands_change_only_open_tasks() -> None:
    task = a_task()
    cause = uuid.uuid4()
    done = apply_command(
        task, CompleteTask(task_id=task.id, at=MONDAY_9, cause_event_id=cause, reason="answered")
    )
    assert done is not None
    assert done.status is TaskStatus.DONE
    assert done.closed_at == MONDAY_9
    assert done.closed_by_event_id == cause
    # once closed, nothing moves it any more
    later = MONDAY_9 + timedelta(hours=1)
    for command in (
        CancelTask(task_id=task.id, at=later, cause_event_id=cause, reason="x"),
        ReassignTask(task_id=task.id, assignee="other", cause_event_id=cause),
        RescheduleTask(task_id=task.id, due_at=later, cause_event_id=cause, reason="x"),
        CompleteTask(task_id=task.id, at=later, cause_event_id=cause, reason="again"),
    ):
        assert apply_command(done, command) == done


def test_create_is_idempotent_and_commands_on_unknown_tasks_are_ignored() -> None:
    task = a_task()
    moved = task.model_copy(update={"assignee": "someone-else"})
    assert apply_command(moved, CreateTask(task=task)) == moved
    assert apply_command(None, CreateTask(task=task)) == task
    unknown = CancelTask(task_id=uuid.uuid4(), at=MONDAY_9, cause_event_id=uuid.uuid4(), reason="x")
    assert apply_commands({task.id: task}, [unknown]) == {task.id: task}


def test_reassign_and_reschedule() -> None:
    task = a_task()
    cause = uuid.uuid4()
    new_due = datetime(2026, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    result = apply_commands(
        {task.id: task},
        [
            ReassignTask(task_id=task.id, assignee="sup-1", cause_event_id=cause),
            RescheduleTask(task_id=task.id, due_at=new_due, cause_event_id=cause, reason="x"),
        ],
    )[task.id]
    assert result.assignee == "sup-1"
    assert result.due_at == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    assert result.is_open


def test_decide_refuses_a_client_context_of_another_client() -> None:
    event = an_event("visit.closed", {"visit_id": "V-1", "outcome": "normal"})
    with pytest.raises(ValueError, match="not the event's client"):
        decide(decode(event), a_client(client_id="C-other"), [], FollowupPolicy())


def test_events_no_rule_cares_about_give_no_commands() -> None:
    event = an_event("visit.arrived", {"visit_id": "V-1"})
    assert decide(decode(event), a_client(), [], FollowupPolicy()) == ()


def test_commands_serialise_to_json() -> None:
    event = an_event("visit.closed", {"visit_id": "V-1", "outcome": "normal"})
    (command,) = decide(decode(event), a_client(), [], FollowupPolicy())
    dumped = command.model_dump(mode="json")
    assert dumped["command"] == "create"
    assert dumped["task"]["rule"] == "D-01b"
    assert dumped["task"]["due_at"] == "2026-11-26T09:00:00Z"
    assert CreateTask.model_validate_json(command.model_dump_json()) == command


def test_reschedule_moves_only_where_the_deadline_changes_and_in_the_direction_allowed() -> None:
    """The one re-timing shape (D-09 risk level and stage, D-07 complex case, D-17 promise):
    an unchanged or absent deadline is no move; ``earlier``/``later`` refuse the other way."""
    cause = uuid.UUID(int=9)
    due = MONDAY_9 + timedelta(days=10)
    tasks = [a_task(due), a_task(due, id=uuid.UUID(int=2))]
    sooner, same = due - timedelta(days=1), due
    moves = {tasks[0].id: sooner, tasks[1].id: same}

    def retime(**how: Any) -> list[RescheduleTask]:
        commands = reschedule(
            tasks, lambda t: moves[t.id], cause_event_id=cause, reason="why", **how
        )
        assert all(isinstance(c, RescheduleTask) for c in commands)
        return [c for c in commands if isinstance(c, RescheduleTask)]

    assert retime() == [
        RescheduleTask(task_id=tasks[0].id, due_at=sooner, cause_event_id=cause, reason="why")
    ]
    assert [c.task_id for c in retime(moves=earlier)] == [tasks[0].id]
    assert retime(moves=later) == []
    moves[tasks[0].id] = due + timedelta(seconds=1)
    assert [c.due_at for c in retime(moves=later)] == [due + timedelta(seconds=1)]
    assert retime(moves=earlier) == []
    assert reschedule(tasks, lambda _: None, cause_event_id=cause, reason="why") == []
