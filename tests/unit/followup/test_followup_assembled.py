"""A task, its creation command and its timers made from values already checked, without
validating them again (#12), are the very objects the models' validation makes from the same
values; any value validation would refuse or convert is left to it (its own error)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from branchline_followup.domain import opening, tasks
from branchline_followup.domain.opening import open_task
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import (
    CreateTask,
    FollowupTask,
    create_task,
    new_task,
    task_id_for,
    validated_new_task,
)
from branchline_followup.domain.timers import DurableTimer, timer_id_for, timers_for
from branchline_followup.domain.vocabulary import TaskKind, TimerKind

pytestmark = pytest.mark.unit

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
EIGHT_EAST = timezone(timedelta(hours=8))


class _Text(str):
    """A ``str`` subclass: validation makes a plain ``str`` of it, so it is left to it."""


INSTANTS = st.one_of(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, EIGHT_EAST, timezone(timedelta(0)), timezone(-timedelta(hours=5))]
        ),
    ),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),  # naive
    st.sampled_from([MONDAY_9, MONDAY_9.isoformat(), MONDAY_9.date(), 7]),
)
TEXTS = st.one_of(
    st.sampled_from(["rm-7", "", " rm-7 ", "client", _Text("rm-7"), 7, None, b"rm-7"]),
    st.text(max_size=8),
)
IDS = st.one_of(
    st.uuids(),
    st.sampled_from([str(uuid.UUID(int=7)), uuid.UUID(int=7).bytes, 7]),
)
KINDS = st.one_of(st.sampled_from(list(TaskKind)), st.sampled_from(["revisit", "nonsense"]))


def _state(model: Any) -> Any:
    """Everything of a model: its type, each field's value with its type (and an instant's
    zone object), the fields set, extras and private state, its JSON."""
    values = [
        (name, type(value), value, getattr(value, "tzinfo", None))
        for name, value in model.__dict__.items()
    ]
    return (
        type(model),
        values,
        model.model_fields_set,
        model.__pydantic_extra__,
        model.__pydantic_private__,
        model.model_dump_json(warnings=False),
    )


def _outcome(build: Any, **values: Any) -> tuple[str, Any]:
    try:
        made = build(**values)
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    if isinstance(made, tuple):
        return ("made", [_state(m) for m in made])
    return ("made", _state(made))


_PLAIN: dict[str, Any] = {
    "kind": TaskKind.REVISIT,
    "source_event_id": uuid.UUID(int=7),
    "client_id": "C-1",
    "branch_id": "BR-001",
    "assignee": "rm-7",
    "subject": "visit:V-1",
    "opened_at": MONDAY_9,
    "due_at": MONDAY_9 + timedelta(days=2),
    "deadline_profile": "default",
}


@given(
    kind=KINDS,
    source_event_id=IDS,
    client_id=TEXTS,
    branch_id=TEXTS,
    assignee=TEXTS,
    subject=TEXTS,
    opened_at=INSTANTS,
    due_at=INSTANTS,
    deadline_profile=TEXTS,
)
@example(**_PLAIN)
@example(**{**_PLAIN, "branch_id": None})
@example(**{**_PLAIN, "opened_at": MONDAY_9.astimezone(EIGHT_EAST)})
@example(**{**_PLAIN, "due_at": MONDAY_9.replace(tzinfo=None)})
@example(**{**_PLAIN, "assignee": _Text("rm-7")})
def test_a_new_task_is_the_validated_task_or_its_error(**values: Any) -> None:
    assert _outcome(new_task, **values) == _outcome(validated_new_task, **values)


def test_a_task_of_plain_values_is_not_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    validated = FollowupTask(
        id=task_id_for(_PLAIN["source_event_id"], _PLAIN["kind"]),
        rule=tasks.RULE_OF_KIND[_PLAIN["kind"]],
        **_PLAIN,
    )

    def refuse(self: FollowupTask, **values: Any) -> None:
        raise AssertionError("validated again")

    monkeypatch.setattr(FollowupTask, "__init__", refuse)
    with pytest.raises(AssertionError, match="validated again"):  # the patch does refuse
        new_task(**{**_PLAIN, "assignee": _Text("rm-7")})
    task = new_task(**_PLAIN)
    assert _state(task) == _state(validated)


@given(
    due_at=INSTANTS,
    opened_at=INSTANTS,
    task_id=IDS,
    escalated_to=st.sampled_from([None, "sup-1"]),
    status=st.sampled_from(["open", "done", "cancelled"]),
    escalate_after=st.sampled_from([None, timedelta(hours=24), timedelta(0)]),
)
@example(MONDAY_9, MONDAY_9, uuid.UUID(int=7), None, "open", timedelta(hours=24))
@example(MONDAY_9.astimezone(EIGHT_EAST), MONDAY_9, uuid.UUID(int=7), None, "open", None)
def test_a_tasks_timers_are_the_validated_timers_or_their_error(
    due_at: Any,
    opened_at: Any,
    task_id: Any,
    escalated_to: str | None,
    status: str,
    escalate_after: timedelta | None,
) -> None:
    task = new_task(**_PLAIN)
    # a copy with an update is not validated again: its values are what the copy carries
    task = task.model_copy(
        update={
            "id": task_id,
            "due_at": due_at,
            "opened_at": opened_at,
            "escalated_to": escalated_to,
            "status": tasks.TaskStatus(status),
        }
    )
    policy = FollowupPolicy(escalate_after=escalate_after)

    def validated(task: FollowupTask, policy: FollowupPolicy) -> tuple[DurableTimer, ...]:
        if not task.is_open:
            return ()
        made = [
            DurableTimer(
                id=timer_id_for(task.id, TimerKind.OVERDUE),
                task_id=task.id,
                kind=TimerKind.OVERDUE,
                fire_at=task.due_at,
            )
        ]
        if policy.escalate_after is not None and task.escalated_to is None:
            made.append(
                DurableTimer(
                    id=timer_id_for(task.id, TimerKind.ESCALATE),
                    task_id=task.id,
                    kind=TimerKind.ESCALATE,
                    fire_at=task.due_at + policy.escalate_after,
                )
            )
        return tuple(made)

    assert _outcome(timers_for, task=task, policy=policy) == _outcome(
        validated, task=task, policy=policy
    )


@given(task_id=st.sampled_from([uuid.UUID(int=7), str(uuid.UUID(int=7))]))
def test_a_creation_command_is_the_validated_command(task_id: Any) -> None:
    task = new_task(**_PLAIN).model_copy(update={"id": task_id})
    assert _state(create_task(task)) == _state(CreateTask(task=task))
    assert create_task(task).task is task


def test_an_opened_task_is_the_validated_command_of_the_validated_task() -> None:
    policy = FollowupPolicy()
    values = {k: v for k, v in _PLAIN.items() if k not in ("source_event_id", "deadline_profile")}
    made = open_task(policy, cause_event_id=uuid.UUID(int=7), profile="default", **values)
    assert _state(made) == _state(CreateTask(task=validated_new_task(**_PLAIN)))
    assert _state(made.task) == _state(validated_new_task(**_PLAIN))
    assert opening.create_task is create_task


class _DriverId(uuid.UUID):
    """A subclass of ``uuid.UUID``, as asyncpg's ids are: validation keeps it as it is."""


_STORED: dict[str, Any] = {
    "id": _DriverId(int=11),
    "kind": "revisit",
    "rule": tasks.RULE_OF_KIND[TaskKind.REVISIT].value,
    "client_id": "C-1",
    "branch_id": "BR-001",
    "assignee": "rm-7",
    "subject": "visit:V-1",
    "opened_at": MONDAY_9,
    "due_at": MONDAY_9 + timedelta(days=2),
    "deadline_profile": "default",
    "source_event_id": uuid.UUID(int=7),
    "status": "done",
    "closed_at": MONDAY_9 + timedelta(days=1),
    "closed_by_event_id": _DriverId(int=12),
    "close_reason": "visited",
    "escalated_to": "sup-1",
}
"""A stored task's row as the driver reads it (enums as their text, ids of its own type)."""

ROW_IDS = st.one_of(IDS, st.uuids().map(lambda u: _DriverId(int=u.int)))


def _validated(values: dict[str, Any]) -> FollowupTask:
    return FollowupTask.model_validate(values)


@given(
    id=ROW_IDS,
    kind=st.one_of(KINDS, st.sampled_from(["revisit", "complaint_resolution", _Text("revisit")])),
    rule=st.sampled_from([*(r.value for r in tasks.TaskRule), "nonsense", 7, None]),
    client_id=TEXTS,
    branch_id=TEXTS,
    assignee=TEXTS,
    subject=TEXTS,
    opened_at=INSTANTS,
    due_at=INSTANTS,
    deadline_profile=TEXTS,
    source_event_id=ROW_IDS,
    status=st.sampled_from(["open", "done", "cancelled", "closed", tasks.TaskStatus.OPEN, None]),
    closed_at=st.one_of(st.none(), INSTANTS),
    closed_by_event_id=st.one_of(st.none(), ROW_IDS),
    close_reason=TEXTS,
    escalated_to=TEXTS,
    left_out=st.sampled_from([None, "escalated_to", "status", "id"]),
)
@example(**_STORED, left_out=None)
@example(**{**_STORED, "closed_at": None, "closed_by_event_id": None}, left_out=None)
@example(**{**_STORED, "kind": "nonsense"}, left_out=None)
@example(**{**_STORED, "opened_at": MONDAY_9.astimezone(EIGHT_EAST)}, left_out=None)
@example(**{**_STORED, "id": str(uuid.UUID(int=11))}, left_out=None)
@example(**_STORED, left_out="escalated_to")
def test_a_stored_tasks_row_is_the_validated_task_or_its_error(
    left_out: str | None, **row: Any
) -> None:
    values = {**_STORED, **row}
    if left_out is not None:
        del values[left_out]
    assert _outcome(tasks.task_of_values, **{"values": values}) == _outcome(
        _validated, **{"values": values}
    )


def test_a_stored_tasks_plain_row_is_not_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from branchline_followup.adapters.read_models import task_from_row

    validated = FollowupTask.model_validate(_STORED)
    assert type(validated.id) is _DriverId  # kept by validation as it is, so kept here too

    def refuse(cls: type[FollowupTask], values: Any, **options: Any) -> None:
        raise AssertionError("validated again")

    monkeypatch.setattr(FollowupTask, "model_validate", classmethod(refuse))
    with pytest.raises(AssertionError, match="validated again"):  # the patch does refuse
        task_from_row({**_STORED, "kind": _Text("revisit")})
    assert _state(task_from_row(_STORED)) == _state(validated)
