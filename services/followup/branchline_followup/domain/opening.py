"""Opening, closing and recording follow-up tasks: the one shape every rule uses.

A rule decides *that* a task is due: its kind, subject, assignee and deadline (from the
:class:`FollowupPolicy`). This module makes the task from that (its id, its rule, the start of
its clock, the jurisdiction profile stored with it), closes tasks for an event, and states what
a task's creation records (the ``followup.task_created`` payload) and how a recorded creation
is read back. Every rule module (:mod:`.rules`, :mod:`.service_loop`, :mod:`.rules_privacy`,
:mod:`.suitability`, :mod:`.due_diligence`, :mod:`.conflicts`) opens its tasks here, so a task
is made, and its creation recorded, the same way whatever rule made it due.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import (
    CancelTask,
    ClientContext,
    CompleteTask,
    CreateTask,
    FollowupTask,
    RescheduleTask,
    TaskCommand,
    create_task,
    new_task,
)
from branchline_followup.domain.vocabulary import TaskKind
from branchline_shared.events.bounded import check_instant
from branchline_shared.events.catalogue import FollowupTaskCreated
from branchline_shared.events.catalogue.scalars import RuleId
from branchline_shared.events.envelope import Identifier, RecordedEvent

CLIENT_SUBJECT = "client"
SUITABILITY_SUBJECT_PREFIX = "suitability:"
"""A D-15 review's subject: ``suitability:<product ids>`` (the holdings that no longer fit)."""


def owner(client: ClientContext, policy: FollowupPolicy) -> str:
    """Who a client's task goes to: their RM, else the unassigned queue."""
    return client.rm_id or policy.unassigned


def open_task(
    policy: FollowupPolicy,
    *,
    kind: TaskKind,
    cause_event_id: uuid.UUID,
    client_id: str,
    branch_id: str | None,
    assignee: str,
    subject: str,
    opened_at: datetime,
    due_at: datetime,
    profile: str | None = None,
    task_id: uuid.UUID | None = None,
) -> CreateTask:
    """The command creating a task of ``kind`` that ``cause_event_id`` made due at
    ``opened_at``. The profile stored with it is the branch's unless given (D-07: later
    profile changes never rewrite it); ``task_id`` only where one cause makes the same kind
    due for many clients (a re-rating, D-15), else the id derives from cause and kind."""
    task = new_task(
        kind=kind,
        source_event_id=cause_event_id,
        client_id=client_id,
        branch_id=branch_id,
        assignee=assignee,
        subject=subject,
        opened_at=require_aware(opened_at, "opened_at"),
        due_at=require_aware(due_at, "due_at"),
        deadline_profile=profile or policy.profile_for(branch_id),
    )
    if task_id is not None:
        task = task.model_copy(update={"id": task_id})
    return create_task(task)


_FROM_EVENT: Any = object()


def open_for_event(
    event: RecordedEvent,
    policy: FollowupPolicy,
    *,
    kind: TaskKind,
    subject: str,
    assignee: str,
    due_at: datetime,
    branch_id: str | None = _FROM_EVENT,
    profile: str | None = None,
) -> CreateTask:
    """:func:`open_task` for a task the client's ``event`` made due: its clock starts at the
    event's ``occurred_at`` (ADR-0008), in the event's branch unless ``branch_id`` is given."""
    return open_task(
        policy,
        kind=kind,
        cause_event_id=event.event_id,
        client_id=event.subject_id,
        branch_id=event.branch_id if branch_id is _FROM_EVENT else branch_id,
        assignee=assignee,
        subject=subject,
        opened_at=event.occurred_at,
        due_at=due_at,
        profile=profile,
    )


def open_of(
    tasks: Iterable[FollowupTask], kinds: Iterable[TaskKind], subject: str | None = None
) -> list[FollowupTask]:
    """The open tasks of ``kinds`` (about ``subject``, if given)."""
    wanted = frozenset(kinds)
    return [
        t
        for t in tasks
        if t.is_open and t.kind in wanted and (subject is None or t.subject == subject)
    ]


def complete(tasks: Iterable[FollowupTask], event: RecordedEvent, reason: str) -> list[TaskCommand]:
    """Complete ``tasks``: ``event`` satisfied them, at its ``occurred_at``."""
    at = require_aware(event.occurred_at)
    return [
        CompleteTask(task_id=t.id, at=at, cause_event_id=event.event_id, reason=reason)
        for t in tasks
    ]


def cancel(tasks: Iterable[FollowupTask], event: RecordedEvent, reason: str) -> list[TaskCommand]:
    """Cancel ``tasks``: after ``event`` they no longer apply."""
    at = require_aware(event.occurred_at)
    return [
        CancelTask(task_id=t.id, at=at, cause_event_id=event.event_id, reason=reason) for t in tasks
    ]


def _changed(task: FollowupTask, due_at: datetime) -> bool:
    return due_at != task.due_at


def earlier(task: FollowupTask, due_at: datetime) -> bool:
    """A move that only ever brings a deadline forward."""
    return due_at < task.due_at


def later(task: FollowupTask, due_at: datetime) -> bool:
    """A move that only ever gives more time."""
    return due_at > task.due_at


def reschedule(
    tasks: Iterable[FollowupTask],
    due_at: Callable[[FollowupTask], datetime | None],
    *,
    cause_event_id: uuid.UUID,
    reason: str,
    moves: Callable[[FollowupTask, datetime], bool] = _changed,
) -> list[TaskCommand]:
    """Re-time ``tasks``: each moves to ``due_at(task)`` where ``moves(task, new)`` says so
    (by default wherever the deadline changes; ``None`` leaves the task as it is).

    The one shape of a deadline that follows from a classification or a fact that changed
    after the task was opened: a D-09 risk level (:mod:`.due_diligence`) or lifecycle stage
    (:func:`.rules.on_stage_changed`), a complaint found complex (D-07), a promise renegotiated
    (D-17)."""
    commands: list[TaskCommand] = []
    for task in tasks:
        new = due_at(task)
        if new is not None and moves(task, new):
            commands.append(
                RescheduleTask(
                    task_id=task.id, due_at=new, cause_event_id=cause_event_id, reason=reason
                )
            )
    return commands


# What a creation records (followup.task_created), and reading it back.


def holdings_named(task: FollowupTask) -> tuple[str, ...]:
    """The holdings a D-15 review names (none for other tasks)."""
    if task.kind is not TaskKind.SUITABILITY_REVIEW:
        return ()
    listed = task.subject.removeprefix(SUITABILITY_SUBJECT_PREFIX)
    return tuple(p for p in listed.split(",") if p)


def creation_record(task: FollowupTask) -> FollowupTaskCreated:
    """The ``followup.task_created`` payload of ``task``: what a replay restores exactly
    (deadline, assignee, profile), what the task is about, and for a D-15 review the
    holdings it names (its subject is made of them: a list is no identifier)."""
    review = task.kind is TaskKind.SUITABILITY_REVIEW
    return FollowupTaskCreated(
        task_id=str(task.id),
        kind=task.kind,
        assignee=task.assignee,
        due_at=task.due_at,
        rule=task.rule.value,
        source_event_id=task.source_event_id,
        subject_id=None if review else task.subject,
        profile=task.deadline_profile,
        holdings=holdings_named(task),
    )


CREATION_FIELDS = (
    "task_id",
    "kind",
    "assignee",
    "due_at",
    "rule",
    "source_event_id",
    "subject_id",
    "profile",
    "escalate_at",
    "note",
    "holdings",
)
"""``FollowupTaskCreated``'s fields in order, as :func:`creation_data` was written against
them (a test holds the catalogue's model to them: a new field needs its place here first)."""

MAX_HOLDINGS = 200
"""``FollowupTaskCreated.holdings``' bound."""

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_RULE_ID: TypeAdapter[str] = TypeAdapter(RuleId)
_INSTANT_JSON: TypeAdapter[datetime] = TypeAdapter(datetime)


@functools.lru_cache(maxsize=4096)
def _identifier(value: str) -> str:
    """``value`` as the catalogue's ``Identifier`` validates it (stripped), remembered: a
    batch's tasks share a few assignees (its RMs), profiles and subjects."""
    return _IDENTIFIER.validate_python(value)


@functools.lru_cache(maxsize=64)
def _rule_id(value: str) -> str:
    return _RULE_ID.validate_python(value)


def creation_data(task: FollowupTask) -> dict[str, Any]:
    """``creation_record(task).model_dump(mode="json", exclude_none=True)``: the payload a
    task's creation records, without building the payload model (#12: its validation and
    dump were about 7 µs per created task, most of it the checks of the same few assignees
    and profiles, each now checked once by the catalogue's own type and remembered).

    The same document: the model's fields in its order, each value as the model's validation
    keeps it (an identifier stripped, the deadline checked as an ``Instant`` and written by
    pydantic's own serializer). Wherever a value is not what that needs (any check refuses
    it, it is of another type), the model is validated and dumped as before, so the error
    raised is the model's own."""
    try:
        kind = task.kind
        holdings = holdings_named(task)
        due_at = task.due_at
        source = task.source_event_id
        if (
            type(kind) is not TaskKind
            or len(holdings) > MAX_HOLDINGS
            or not isinstance(due_at, datetime)
            or not isinstance(source, uuid.UUID)
        ):
            raise ValueError("left to the model")
        data: dict[str, Any] = {
            # a UUID's text is always an identifier (hex digits and hyphens), each task's new
            "task_id": str(task.id),
            "kind": kind.value,
            "assignee": _identifier(task.assignee),
            "due_at": _INSTANT_JSON.dump_python(check_instant(due_at), mode="json"),
            "rule": _rule_id(task.rule.value),
            "source_event_id": str(source),
        }
        if kind is not TaskKind.SUITABILITY_REVIEW:
            data["subject_id"] = _identifier(task.subject)
        data["profile"] = _identifier(task.deadline_profile)
        data["holdings"] = [_identifier(h) for h in holdings]
        return data
    except Exception:  # whatever is refused, the model decides, raising its own error
        return creation_record(task).model_dump(mode="json", exclude_none=True)


def task_from_creation(
    created: FollowupTaskCreated, *, client_id: str, branch_id: str | None, opened_at: datetime
) -> FollowupTask:
    """The task a recorded creation states (its own id: a D-15 review's is per client)."""
    if created.source_event_id is None:  # the rules always record the event they followed
        raise ValueError(f"followup.task_created of task {created.task_id} names no source")
    task = new_task(
        kind=created.kind,
        source_event_id=created.source_event_id,
        client_id=client_id,
        branch_id=branch_id,
        assignee=created.assignee,
        subject=_subject_of(created),
        opened_at=opened_at,
        due_at=created.due_at,
        deadline_profile=created.profile or "default",
    )
    return task.model_copy(update={"id": uuid.UUID(created.task_id)})


def _subject_of(created: FollowupTaskCreated) -> str:
    if created.kind is TaskKind.SUITABILITY_REVIEW:
        return SUITABILITY_SUBJECT_PREFIX + ",".join(created.holdings)
    return created.subject_id or CLIENT_SUBJECT


def replayed(task: FollowupTask, created: FollowupTaskCreated) -> FollowupTask:
    """``task`` (as today's rules make it) with the deadline, assignee and profile its
    recorded creation states: a deadline once set is never recomputed (D-07)."""
    return task.model_copy(
        update={
            "due_at": created.due_at,
            "assignee": created.assignee,
            "deadline_profile": created.profile or task.deadline_profile,
        }
    )
