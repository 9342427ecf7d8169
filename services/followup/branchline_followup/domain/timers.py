"""Durable timers of a task and what happens when one fires (ADR-0008).

The application stores the timers :func:`timers_for` returns (PostgreSQL, claimed with
``FOR UPDATE SKIP LOCKED``), and when one is due calls :func:`on_timer_fired` with the task as
it is *now*; the result is the event to record, or ``None``. A timer that fires for a task
closed or rescheduled since is stale and yields nothing, so timers never need to be deleted
eagerly (re-planning after a reschedule upserts by :attr:`DurableTimer.id`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from branchline_followup.domain.assembled import assembled, is_utc, is_uuid
from branchline_followup.domain.business_days import UtcDatetime, require_aware
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import FollowupTask
from branchline_followup.domain.vocabulary import TimerKind
from branchline_shared.domain.ids import name_uuid
from branchline_shared.events.catalogue import EventType

TIMER_NAMESPACE = uuid.UUID("0f6f7a52-93c4-5e0f-8d4c-6a3d1b2e9f70")
FOLLOWUP_EVENT_NAMESPACE = uuid.UUID("5b1e3c7d-2a40-5c8e-b6f1-9e07d4a2c583")

FollowupTimerEventType = Literal[EventType.FOLLOWUP_OVERDUE, EventType.FOLLOWUP_ESCALATED]
FOLLOWUP_OVERDUE: Final = EventType.FOLLOWUP_OVERDUE
FOLLOWUP_ESCALATED: Final = EventType.FOLLOWUP_ESCALATED


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DurableTimer(_Frozen):
    """One timer of a task. ``id`` is stable per (task, kind): re-planning replaces it."""

    id: uuid.UUID
    task_id: uuid.UUID
    kind: TimerKind
    fire_at: UtcDatetime


class FollowupTimerEvent(_Frozen):
    """An event the followup service records when a deadline passes.

    ``event_id`` is derived from the task, the timer kind and the deadline instant, so firing
    the same timer twice records one event. ``occurred_at`` is that deadline instant (when the
    task became overdue / escalation-due), not the possibly later time the timer was run.
    ``data`` holds JSON-ready values with the API's field names.
    """

    event_id: uuid.UUID
    type: FollowupTimerEventType
    client_id: str
    branch_id: str | None
    occurred_at: UtcDatetime
    data: dict[str, str]


def timer_id_for(task_id: uuid.UUID, kind: TimerKind) -> uuid.UUID:
    """The id of the task's timer of ``kind`` (stable: re-planning replaces the timer)."""
    return name_uuid(TIMER_NAMESPACE, f"{task_id}/{kind.value}")


_TIMER_KINDS = tuple((kind, f"/{kind.value}") for kind in TimerKind)
"""In the enum's order, each with the end of its timers' names (#12: iterating the enum
itself, per task saved, costs a generator; its ``value`` a property call per timer)."""


def _fire_at(task: FollowupTask, kind: TimerKind, policy: FollowupPolicy) -> datetime | None:
    if kind is TimerKind.OVERDUE:
        return task.due_at
    if policy.escalate_after is None:
        return None
    return task.due_at + policy.escalate_after


def timers_for(task: FollowupTask, policy: FollowupPolicy) -> tuple[DurableTimer, ...]:
    """The timers an open task needs: overdue at ``due_at``; escalate ``escalate_after``
    (24 h) later unless escalation is off or already happened. None for a closed task."""
    if not task.is_open:
        return ()
    task_id = task.id
    checked = is_uuid(task_id)  # a task copied with an update is not validated again
    name = str(task_id)  # each timer's name starts with it (:func:`timer_id_for`), made once
    timers: list[DurableTimer] = []
    for kind, name_end in _TIMER_KINDS:
        if kind is TimerKind.ESCALATE and task.escalated_to is not None:
            continue
        fire_at = _fire_at(task, kind, policy)
        if fire_at is None:
            continue
        timer_id = name_uuid(TIMER_NAMESPACE, name + name_end)
        if checked and is_utc(fire_at):
            # what validation would keep as it is (#12: a timer was validated again per task)
            timers.append(
                assembled(
                    DurableTimer,
                    {"id": timer_id, "task_id": task_id, "kind": kind, "fire_at": fire_at},
                    _TIMER_FIELDS,
                )
            )
        else:
            timers.append(DurableTimer(id=timer_id, task_id=task_id, kind=kind, fire_at=fire_at))
    return tuple(timers)


_TIMER_FIELDS = frozenset(("id", "task_id", "kind", "fire_at"))


def on_timer_fired(
    task: FollowupTask, timer_kind: TimerKind, now: datetime, policy: FollowupPolicy
) -> FollowupTimerEvent | None:
    """The event to record when a timer of ``task`` fires at ``now``, or ``None`` when the
    task is closed, was moved so the deadline has not come yet, or was escalated already.

    - overdue: ``followup.overdue`` ``{task_id, due_at}``;
    - escalate: ``followup.escalated`` ``{task_id, supervisor_id}`` (the catalogue's names),
      ``supervisor_id`` being the supervisor of the task's assignee (D-08: the RM's
      supervisor; :meth:`FollowupPolicy.supervisor_of`).
    """
    now = require_aware(now, "now")
    if not task.is_open:
        return None
    fire_at = _fire_at(task, timer_kind, policy)
    if fire_at is None or now < fire_at:
        return None
    if timer_kind is TimerKind.OVERDUE:
        event_type: FollowupTimerEventType = FOLLOWUP_OVERDUE
        data = {"task_id": str(task.id), "due_at": task.due_at.isoformat()}
    else:
        if task.escalated_to is not None:
            return None
        event_type = FOLLOWUP_ESCALATED
        data = {"task_id": str(task.id), "supervisor_id": policy.supervisor_of(task.assignee)}
    return FollowupTimerEvent(
        event_id=name_uuid(
            FOLLOWUP_EVENT_NAMESPACE, f"{task.id}/{timer_kind.value}/{fire_at.isoformat()}"
        ),
        type=event_type,
        client_id=task.client_id,
        branch_id=task.branch_id,
        occurred_at=fire_at,
        data=data,
    )
