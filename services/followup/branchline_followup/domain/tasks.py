"""Follow-up tasks, their SLA state, and the commands the rules give about them.

A task's id is derived from the event that made it due and its kind (UUID v5), so a redelivered
event produces the same task and creating it again changes nothing. The deadline and the
jurisdiction profile that computed it are stored with the task: a later profile change never
rewrites an existing task (D-07).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from branchline_followup.domain.assembled import assembled, is_text, is_utc, is_uuid
from branchline_followup.domain.business_days import UtcDatetime, require_aware
from branchline_followup.domain.vocabulary import (
    RULE_OF_KIND,
    LifecycleStage,
    SlaState,
    TaskKind,
    TaskRule,
    TaskStatus,
)
from branchline_shared.domain.ids import name_uuid

TASK_NAMESPACE = uuid.UUID("7d0c51a8-4a1e-5f0b-9a53-3f4f2b0e8c11")
"""UUID v5 namespace of follow-up task ids (fixed forever: changing it changes every id)."""

REMEMBERED_IDS = 4096
"""Derived task ids (and their creation event ids) a process keeps. They are asked again
within a batch (a task made, then its recorded creation matched), seldom later: since
creations are looked up by their source event a miss costs one derivation (a few µs), while
32,768 of each held 18.6 MB for the whole life of the worker (#12, docs/performance.md
"Memory of the whole processes")."""


@functools.lru_cache(maxsize=REMEMBERED_IDS)
def task_id_for(source_event_id: uuid.UUID, kind: TaskKind) -> uuid.UUID:
    """The id of the task of ``kind`` that the event ``source_event_id`` made due (recorded
    creations are looked up by the source event, not by every kind's id, #12)."""
    return name_uuid(TASK_NAMESPACE, f"{source_event_id}/{kind.value}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClientContext(_Frozen):
    """What the rules need to know about the client, from the client read model."""

    client_id: str
    rm_id: str | None = None
    stage: LifecycleStage = LifecycleStage.PROSPECT
    branch_id: str | None = None
    """The client's home branch: its calendar and profile apply to tasks that no branch event
    caused (lifecycle changes)."""
    risk_level: str | None = None
    """D-09 risk level (low, medium, high, very_high) from the latest assessment, if any."""


REMEMBERED_CONTEXTS = 1024
"""Client contexts a process keeps (:func:`client_context`): a client's events mostly find the
context of its previous one; a miss costs one validation (≈ 2 µs)."""


@functools.lru_cache(maxsize=REMEMBERED_CONTEXTS)
def client_context(
    client_id: str,
    rm_id: str | None,
    stage: LifecycleStage,
    branch_id: str | None,
    risk_level: str | None,
) -> ClientContext:
    """``ClientContext(...)`` of these fields, remembered (#12: the projection makes one per
    event, nearly always the same as for the client's previous event). The context is frozen,
    so the one remembered is the one validated from equal fields."""
    return ClientContext(
        client_id=client_id, rm_id=rm_id, stage=stage, branch_id=branch_id, risk_level=risk_level
    )


class FollowupTask(_Frozen):
    """A follow-up task (docs/api.md "Followup API")."""

    id: uuid.UUID
    kind: TaskKind
    rule: TaskRule
    client_id: str
    branch_id: str | None = None
    assignee: str
    subject: str
    """What the task is about: ``visit:<id>``, ``appointment:<id>``, ``consultation:<id>``,
    ``complaint:<id>``, ``product:<id>`` or ``client``. Satisfying events match on it."""
    opened_at: UtcDatetime
    """When the event that made the task due occurred (the start of its clock)."""
    due_at: UtcDatetime
    deadline_profile: str
    source_event_id: uuid.UUID
    status: TaskStatus = TaskStatus.OPEN
    closed_at: UtcDatetime | None = None
    closed_by_event_id: uuid.UUID | None = None
    close_reason: str | None = None
    escalated_to: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status is TaskStatus.OPEN

    def met_deadline(self) -> bool:
        """Done no later than due (a task completed at its due instant is on time)."""
        return (
            self.status is TaskStatus.DONE
            and self.closed_at is not None
            and self.closed_at <= self.due_at
        )


def new_task(
    *,
    kind: TaskKind,
    source_event_id: uuid.UUID,
    client_id: str,
    branch_id: str | None,
    assignee: str,
    subject: str,
    opened_at: datetime,
    due_at: datetime,
    deadline_profile: str,
) -> FollowupTask:
    """An open task with its deterministic id and the rule its kind belongs to.

    Values that validation keeps as they are (exact ``TaskKind``, ``uuid.UUID``, ``str``,
    instants in UTC: what the rules pass) make the task without validating it again
    (:func:`~.assembled.assembled`, #12); any other is validated, with the model's own error
    or conversion."""
    named = _new_task_values(
        kind=kind,
        source_event_id=source_event_id,
        client_id=client_id,
        branch_id=branch_id,
        assignee=assignee,
        subject=subject,
        opened_at=opened_at,
        due_at=due_at,
        deadline_profile=deadline_profile,
    )
    if (
        type(kind) is TaskKind
        and is_uuid(source_event_id)
        and is_text(client_id)
        and (branch_id is None or is_text(branch_id))
        and is_text(assignee)
        and is_text(subject)
        and is_utc(opened_at)
        and is_utc(due_at)
        and is_text(deadline_profile)
    ):
        return assembled(FollowupTask, {**named, **_OPEN_TASK_DEFAULTS}, NEW_TASK_FIELDS)
    return FollowupTask(**named)


def validated_new_task(**named: Any) -> FollowupTask:
    """:func:`new_task` of the same keyword arguments as the model's validation makes it (the
    reference its tests compare the assembled task with)."""
    return FollowupTask(**_new_task_values(**named))


def _new_task_values(
    *,
    kind: TaskKind,
    source_event_id: uuid.UUID,
    client_id: str,
    branch_id: str | None,
    assignee: str,
    subject: str,
    opened_at: datetime,
    due_at: datetime,
    deadline_profile: str,
) -> dict[str, Any]:
    """The fields a new task names, in the model's order."""
    return {
        "id": task_id_for(source_event_id, kind),
        "kind": kind,
        "rule": RULE_OF_KIND[kind],
        "client_id": client_id,
        "branch_id": branch_id,
        "assignee": assignee,
        "subject": subject,
        "opened_at": opened_at,
        "due_at": due_at,
        "deadline_profile": deadline_profile,
        "source_event_id": source_event_id,
    }


_OPEN_TASK_DEFAULTS: dict[str, Any] = {
    "status": TaskStatus.OPEN,
    "closed_at": None,
    "closed_by_event_id": None,
    "close_reason": None,
    "escalated_to": None,
}
"""The fields a new task leaves at their defaults: an open task."""

NEW_TASK_FIELDS = frozenset(FollowupTask.model_fields) - _OPEN_TASK_DEFAULTS.keys()
"""The fields :func:`new_task` names (the rest keep their defaults: an open task)."""

TASK_FIELDS = tuple(FollowupTask.model_fields)
"""Every field of a task, in the model's order (a stored task's row names them all)."""

_KINDS = {kind.value: kind for kind in TaskKind}
_RULES = {rule.value: rule for rule in TaskRule}
_STATUSES = {status.value: status for status in TaskStatus}
_ALL_FIELDS_SET = frozenset(TASK_FIELDS)


def task_of_values(values: Mapping[str, Any]) -> FollowupTask:
    """``FollowupTask.model_validate(values)``, without validating again values that
    validation keeps as they are (#12: a stored task's row read, 1.2 per event on the
    worker's path): every field named in the model's order, ids that are ``uuid.UUID`` (a
    driver's subclass too, which validation keeps), the enums' plain ``str`` values, texts
    that are ``str``, instants in UTC. A row with any other value is validated, with the
    model's own error or conversion; ``tests/unit/followup/test_followup_assembled.py``
    compares both."""
    if tuple(values) == TASK_FIELDS:
        (
            task_id,
            kind,
            rule,
            client_id,
            branch_id,
            assignee,
            subject,
            opened_at,
            due_at,
            profile,
            source_event_id,
            status,
            closed_at,
            closed_by,
            reason,
            escalated_to,
        ) = values.values()
        text = str
        if (
            type(kind) is text
            and type(rule) is text
            and type(status) is text
            and type(client_id) is text
            and type(assignee) is text
            and type(subject) is text
            and type(profile) is text
            and (branch_id is None or type(branch_id) is text)
            and (reason is None or type(reason) is text)
            and (escalated_to is None or type(escalated_to) is text)
            and isinstance(task_id, uuid.UUID)
            and isinstance(source_event_id, uuid.UUID)
            and (closed_by is None or isinstance(closed_by, uuid.UUID))
            and type(opened_at) is datetime
            and opened_at.tzinfo is UTC
            and type(due_at) is datetime
            and due_at.tzinfo is UTC
            and (closed_at is None or (type(closed_at) is datetime and closed_at.tzinfo is UTC))
        ):
            kind_member = _KINDS.get(kind)
            rule_member = _RULES.get(rule)
            status_member = _STATUSES.get(status)
            if kind_member is not None and rule_member is not None and status_member is not None:
                return assembled(
                    FollowupTask,
                    {
                        "id": task_id,
                        "kind": kind_member,
                        "rule": rule_member,
                        "client_id": client_id,
                        "branch_id": branch_id,
                        "assignee": assignee,
                        "subject": subject,
                        "opened_at": opened_at,
                        "due_at": due_at,
                        "deadline_profile": profile,
                        "source_event_id": source_event_id,
                        "status": status_member,
                        "closed_at": closed_at,
                        "closed_by_event_id": closed_by,
                        "close_reason": reason,
                        "escalated_to": escalated_to,
                    },
                    _ALL_FIELDS_SET,
                )
    return FollowupTask.model_validate(values)


def sla_state(task: FollowupTask, now: datetime, due_soon_window: timedelta) -> SlaState:
    """docs/api.md ``sla_state``.

    - ``done``: the task is closed (done, or cancelled: no clock runs any more);
    - ``overdue``: open and ``now >= due_at`` (the deadline instant has been reached);
    - ``due_soon``: open and ``due_at - due_soon_window <= now < due_at``;
    - ``on_track``: otherwise.
    """
    now = require_aware(now, "now")
    if not task.is_open:
        return SlaState.DONE
    if now >= task.due_at:
        return SlaState.OVERDUE
    if now >= task.due_at - due_soon_window:
        return SlaState.DUE_SOON
    return SlaState.ON_TRACK


# Commands (imperative): what the application applies to its task store, in order.


class CreateTask(_Frozen):
    """Insert the task; if a task with that id exists already, change nothing."""

    command: Literal["create"] = "create"
    task: FollowupTask


class CompleteTask(_Frozen):
    """Mark an open task done (its satisfying event happened); no-op unless open."""

    command: Literal["complete"] = "complete"
    task_id: uuid.UUID
    at: UtcDatetime
    cause_event_id: uuid.UUID
    reason: str


class CancelTask(_Frozen):
    """Mark an open task cancelled (it no longer applies); no-op unless open."""

    command: Literal["cancel"] = "cancel"
    task_id: uuid.UUID
    at: UtcDatetime
    cause_event_id: uuid.UUID
    reason: str


class ReassignTask(_Frozen):
    """Give an open task to someone else; no-op unless open."""

    command: Literal["reassign"] = "reassign"
    task_id: uuid.UUID
    assignee: str
    cause_event_id: uuid.UUID


class RescheduleTask(_Frozen):
    """Move an open task's deadline (its timers must be re-planned); no-op unless open."""

    command: Literal["reschedule"] = "reschedule"
    task_id: uuid.UUID
    due_at: UtcDatetime
    cause_event_id: uuid.UUID
    reason: str


def create_task(task: FollowupTask) -> CreateTask:
    """``CreateTask(task=task)``; a ``FollowupTask`` itself (validation takes a model instance
    as it is) without validating it again (#12)."""
    if type(task) is FollowupTask:
        return assembled(CreateTask, {"command": "create", "task": task}, _CREATE_FIELDS)
    return CreateTask(task=task)


_CREATE_FIELDS = frozenset(("task",))


TaskCommand = Annotated[
    CreateTask | CompleteTask | CancelTask | ReassignTask | RescheduleTask,
    Field(discriminator="command"),
]


_CLOSING = (CompleteTask, CancelTask)
"""The commands that close a task (a tuple: ``A | B`` made a union object per call, #12)."""


def apply_command(task: FollowupTask | None, command: TaskCommand) -> FollowupTask | None:
    """The task after ``command`` (``task`` is the stored task with the command's id, if any).

    The reference semantics for every task store: creation is idempotent, and a command on a
    task that is no longer open changes nothing.
    """
    if isinstance(command, CreateTask):
        return task if task is not None else command.task
    if task is None or not task.is_open:
        return task
    if isinstance(command, _CLOSING):
        status = TaskStatus.DONE if isinstance(command, CompleteTask) else TaskStatus.CANCELLED
        return task.model_copy(
            update={
                "status": status,
                "closed_at": command.at,
                "closed_by_event_id": command.cause_event_id,
                "close_reason": command.reason,
            }
        )
    if isinstance(command, ReassignTask):
        return task.model_copy(update={"assignee": command.assignee})
    return task.model_copy(update={"due_at": command.due_at})


def command_task_id(command: TaskCommand) -> uuid.UUID:
    return command.task.id if isinstance(command, CreateTask) else command.task_id


def apply_commands(
    tasks: Mapping[uuid.UUID, FollowupTask], commands: Iterable[TaskCommand]
) -> dict[uuid.UUID, FollowupTask]:
    """Apply ``commands`` in order to a copy of ``tasks`` (an in-memory task store)."""
    result = dict(tasks)
    for command in commands:
        task_id = command_task_id(command)
        updated = apply_command(result.get(task_id), command)
        if updated is not None:
            result[task_id] = updated
    return result


def mark_escalated(task: FollowupTask, to: str) -> FollowupTask:
    """The task after its ``followup.escalated`` event (the assignee stays; the supervisor
    sees it and may reassign it)."""
    return task.model_copy(update={"escalated_to": to})
