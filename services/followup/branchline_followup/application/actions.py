"""What relationship managers and supervisors do to a task: complete it, reassign it.

Each action is a ``followup.*`` event recorded in followup's event store (with its outbox row,
so the audit trail receives it) and applied to the read models in the same transaction. A
refused action changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.application.projector import FOLLOWUP_COMPLETED, FOLLOWUP_REASSIGNED
from branchline_followup.application.recording import (
    FollowupContext,
    normalised,
    record_and_apply,
    task_stream_id,
)
from branchline_followup.application.reprojection import in_a_unit_products_first
from branchline_followup.domain import FollowupTask, TaskStatus
from branchline_followup.domain.suitability import completion_missing
from branchline_shared.crypto.keystore import KeyDestroyed
from branchline_shared.crypto.sealing import SealingError, is_sealed, unseal_paths
from branchline_shared.events.catalogue import (
    PERSONAL_FIELDS,
    EventType,
    FollowupCompleted,
    FollowupReassigned,
    RefusedEvent,
    RuleViolationRefused,
    SatisfactionScores,
)
from branchline_shared.events.envelope import Actor, RecordedEvent, Submitter
from branchline_shared.events.personal_data import redact_personal
from branchline_shared.events.typed import UnreadablePayload, decode, payload_as
from branchline_shared.events.vocabulary import FollowupOutcome

RULE_VIOLATION_REFUSED = EventType.RULE_VIOLATION_REFUSED.value

REFUSAL_IDS = uuid.UUID("5d2b7f0e-8c1a-4f4e-9a57-3b1c7e2d6f90")
"""The namespace of a keyed request's refusal id (:func:`refusal_event_id`)."""


def refusal_event_id(task_id: uuid.UUID, actor: Actor, request_key: str) -> uuid.UUID:
    """The id the refusal of one request is recorded under: the caller's key for the request
    (``Idempotency-Key``, the console form's own), scoped to the task and the caller, so that
    the same request sent again finds its refusal and no one else's key can name it (#12)."""
    return uuid.uuid5(REFUSAL_IDS, "\n".join((str(task_id), actor.role, actor.id, request_key)))


class TaskRefused(Exception):
    """Base of the refusals of a task action."""

    def __init__(self, task_id: uuid.UUID, detail: str) -> None:
        super().__init__(detail)
        self.task_id = task_id
        self.detail = detail


class TaskNotFound(TaskRefused):
    def __init__(self, task_id: uuid.UUID) -> None:
        super().__init__(task_id, f"no follow-up task {task_id}")


class TaskClosed(TaskRefused):
    def __init__(self, task: FollowupTask) -> None:
        super().__init__(task.id, f"task {task.id} is already {task.status.value}")
        self.status = task.status.value


class NotYourTask(TaskRefused):
    def __init__(self, task: FollowupTask, who: str) -> None:
        super().__init__(task.id, f"task {task.id} is outside the scope of {who}")


class SelfGrading(TaskRefused):
    def __init__(self, task: FollowupTask, who: str) -> None:
        super().__init__(
            task.id,
            f"{who} may not record satisfaction scores on task {task.id}: they feed the "
            "measures of its assignee; scores come from the client (a survey) or an "
            "independent supervisor (D-10)",
        )


class ClientNotWarned(TaskRefused):
    """D-15: a suitability review completed before the client was warned; the refusal is
    recorded (``rule.violation_refused``)."""

    rule = "D-15"
    title = "Client not warned"

    def __init__(self, task: FollowupTask, missing: list[str]) -> None:
        self.fields = missing
        super().__init__(
            task.id,
            f"suitability review {task.id} cannot be completed without {', '.join(missing)}: "
            "the client is warned (风险提示) that the holdings no longer fit before the outcome "
            "is recorded (send client_warned: true once warned)",
        )


async def _record_refusal(
    uow: FollowupUnitOfWork,
    ctx: FollowupContext,
    task: FollowupTask,
    refusal: ClientNotWarned,
    *,
    event_id: uuid.UUID,
    refused_type: str,
    refused_data: dict[str, Any],
    now: datetime,
    actor: Actor,
    submitted_by: Submitter | None,
) -> None:
    """Record the refusal like every other (ADR-0005): on the task's stream, to the audit
    trail; the refused submission without its personal values (D-04)."""
    payload = RuleViolationRefused(
        rule=refusal.rule,
        title=refusal.title,
        detail=refusal.detail,
        field=", ".join(refusal.fields),
        refused_event=RefusedEvent(
            type=refused_type,
            occurred_at=now,
            client_id=task.client_id,
            branch_id=task.branch_id,
            actor=actor,
            data=redact_personal(refused_type, refused_data),
        ),
        submitted_by=actor,
    )
    await record_and_apply(
        uow,
        ctx,
        event_id=event_id,
        event_type=RULE_VIOLATION_REFUSED,
        task=task,
        occurred_at=now,
        actor=actor,
        data=payload.model_dump(mode="json", exclude_none=True),
        submitted_by=submitted_by,
    )


def _same_refusal(
    recorded: RecordedEvent, task: FollowupTask, actor: Actor, refused_data: dict[str, Any]
) -> bool:
    """Whether ``recorded`` (found under a request's key's id) is this request's refusal: by
    ``actor``, on ``task``, of the same submission as far as a refusal keeps it (its personal
    values redacted, D-04). A key sent again with another submission is another attempt
    (#12)."""
    if (
        recorded.type != RULE_VIOLATION_REFUSED
        or recorded.actor != actor
        or recorded.stream_id != task_stream_id(task.id)
    ):
        return False
    refused = recorded.data.get("refused_event")
    return (
        isinstance(refused, dict)
        and refused.get("type") == FOLLOWUP_COMPLETED
        and refused.get("data") == redact_personal(FOLLOWUP_COMPLETED, refused_data)
    )


async def _locked_task(
    uow: FollowupUnitOfWork,
    task_id: uuid.UUID,
    may_act: Callable[[str], bool],
    who: str,
) -> FollowupTask:
    """The task, its client locked, if ``may_act`` on its assignee; open or closed."""
    task = await uow.tasks.get(task_id)
    if task is None:
        raise TaskNotFound(task_id)
    await uow.lock_client(task.client_id)
    task = await uow.tasks.get(task_id)  # as of the lock
    if task is None:
        raise TaskNotFound(task_id)
    if not may_act(task.assignee):  # before anything about the task is told
        raise NotYourTask(task, who)
    return task


async def _locked_open_task(
    uow: FollowupUnitOfWork,
    task_id: uuid.UUID,
    may_act: Callable[[str], bool],
    who: str,
) -> FollowupTask:
    task = await _locked_task(uow, task_id, may_act, who)
    if not task.is_open:
        raise TaskClosed(task)
    return task


async def _completed_alike(
    uow: FollowupUnitOfWork,
    ctx: FollowupContext,
    task: FollowupTask,
    actor: Actor,
    wanted: FollowupCompleted,
) -> bool:
    """Whether the closed ``task`` was closed by a ``followup.completed`` of ``actor`` with
    the payload ``wanted`` (the same completion sent again, e.g. after its answer was lost).

    The task itself is the idempotency key: a task is completed at most once, so its
    completion is compared with the one recorded (its ``closed_by_event_id``), as recorded:
    the note opened with the client's key, instants compared as instants. Anything that
    cannot be told (another event closed it, the note's key destroyed, an unreadable
    payload) is not alike: the resend stays refused as a closed task (#12)."""
    if task.status is not TaskStatus.DONE or task.closed_by_event_id is None:
        return False
    # As written (a catalogue-v1 completion at v1): what its caller sent, to compare with.
    event = await uow.events.as_recorded(task.closed_by_event_id)
    if event is None:
        return False
    if event.type != FOLLOWUP_COMPLETED or event.actor != actor:
        return False
    data = event.data
    paths = PERSONAL_FIELDS.get(FOLLOWUP_COMPLETED, ())
    if any(is_sealed(data.get(path)) for path in paths):
        if ctx.keys is None:
            return False
        privacy = await uow.privacy.state(task.client_id)
        if privacy is not None and privacy.restricted:
            # Restricted by an erasure request: their personal data is used for nothing,
            # not even this comparison (D-04); the resend stays refused as a closed task.
            return False
        try:
            key = await ctx.keys.existing_key(task.client_id)
            if key is None:
                return False
            data = unseal_paths(data, paths, key, client_id=task.client_id)
        except (KeyDestroyed, SealingError):
            return False
    if data.get("outcome") != wanted.outcome.value:
        # As sent, not as read now: a catalogue-v1 outcome was free text, read as ``other``
        # since v2 (upcasting.py). A v1 text that was a code is what a resend sends again; any
        # other text cannot be sent again (v2 takes codes only), so no resend is the same:
        # ``other`` now is not that completion (#12).
        return False
    try:
        recorded = payload_as(decode(event.model_copy(update={"data": data})), FollowupCompleted)
    except UnreadablePayload:
        return False
    return recorded.model_dump() == wanted.model_dump()


async def _record_action(
    uow: FollowupUnitOfWork,
    ctx: FollowupContext,
    task: FollowupTask,
    event_type: str,
    now: datetime,
    actor: Actor,
    data: dict[str, Any],
    submitted_by: Submitter | None,
) -> FollowupTask:
    """Record an RM's or supervisor's action on ``task`` as an event; the task as it now is."""
    await record_and_apply(
        uow,
        ctx,
        event_id=uuid.uuid4(),
        event_type=event_type,
        task=task,
        occurred_at=now,
        actor=actor,
        data=data,
        submitted_by=submitted_by,
    )
    changed = await uow.tasks.get(task.id)
    assert changed is not None  # locked and open a moment ago, in this unit of work
    return changed


def completion(
    task: FollowupTask,
    *,
    outcome: FollowupOutcome,
    note: str | None,
    next_contact_at: datetime | None,
    scores: SatisfactionScores | None,
    client_warned: bool | None,
) -> FollowupCompleted:
    """``followup.completed``'s payload, made by its catalogue model like every other event's:
    the outcome a code, the note bounded and sealable, the scores 0..100 (D-10), the next
    contact an aware instant (D-08), the D-15 warning a strict boolean. Its JSON form is the
    bytes the dict it replaces was normalised to (#12)."""
    return FollowupCompleted(
        task_id=str(task.id),
        outcome=outcome,
        kind=task.kind,
        note=note,
        next_contact_at=next_contact_at,
        scores=scores,
        client_warned=client_warned,
    )


async def complete_task(
    ctx: FollowupContext,
    task_id: uuid.UUID,
    *,
    actor: Actor,
    may_act: Callable[[str], bool],
    may_grade: Callable[[str], bool] = lambda _assignee: True,
    outcome: FollowupOutcome,
    submitted_by: Submitter | None = None,
    note: str | None = None,
    next_contact_at: datetime | None = None,
    scores: SatisfactionScores | None = None,
    client_warned: bool | None = None,
    request_key: str | None = None,
) -> FollowupTask:
    """Complete an open task (``followup.completed``) if ``may_act`` on its assignee (the
    caller's scope); ``scores`` only if ``may_grade`` (no one grades themselves, D-10).
    ``client_warned``: a D-15 review records whether the client was warned that a holding
    no longer fits (风险提示); without it the completion is refused and the refusal
    recorded, once per request: ``request_key`` (the caller's, for this request) names it, so
    the same request sent again (its answer lost, ``outcome-unknown``, a double submit) is
    refused again without a second record. Without a key every attempt is recorded."""
    now = await ctx.clock.now()
    refusal: ClientNotWarned | None = None

    async def in_its_unit(uow: FollowupUnitOfWork) -> FollowupTask | None:
        nonlocal refusal
        refusal = None  # a rerun (D-15, products first) decides again
        task = await _locked_task(uow, task_id, may_act, actor.id)
        payload = completion(
            task,
            outcome=outcome,
            note=note,
            next_contact_at=next_contact_at,
            scores=scores,
            client_warned=client_warned,
        )
        if not task.is_open:
            if await _completed_alike(uow, ctx, task, actor, payload):
                raise _Unchanged(task)  # the same completion again: the task as it is
            raise TaskClosed(task)
        if scores is not None and not may_grade(task.assignee):
            raise SelfGrading(task, actor.id)
        data = payload.model_dump(mode="json", exclude_none=True)
        missing = completion_missing(task, client_warned)
        if missing:
            # the refusal is recorded and committed; the task stays open
            refusal = ClientNotWarned(task, missing)
            refused_data = normalised(FOLLOWUP_COMPLETED, data)
            event_id = uuid.uuid4()
            if request_key is not None:
                keyed = refusal_event_id(task.id, actor, request_key)
                earlier = await uow.events.as_recorded(keyed)
                if earlier is None:
                    event_id = keyed
                elif _same_refusal(earlier, task, actor, refused_data):
                    raise refusal  # recorded for this request: rolled back, refused again
                # else another submission under that key: another attempt, its own id
            await _record_refusal(
                uow,
                ctx,
                task,
                refusal,
                event_id=event_id,
                refused_type=FOLLOWUP_COMPLETED,
                refused_data=refused_data,
                now=now,
                actor=actor,
                submitted_by=submitted_by,
            )
            return None
        return await _record_action(
            uow, ctx, task, FOLLOWUP_COMPLETED, now, actor, data, submitted_by
        )

    try:
        changed = await in_a_unit_products_first(ctx.units, in_its_unit)
    except _Unchanged as unchanged:
        return unchanged.task
    if refusal is not None:
        raise refusal
    assert changed is not None  # recorded when not refused
    return changed


async def reassign_task(
    ctx: FollowupContext,
    task_id: uuid.UUID,
    *,
    actor: Actor,
    assignee: str,
    reason: str | None = None,
    may_act: Callable[[str], bool] = lambda _assignee: True,
    submitted_by: Submitter | None = None,
) -> FollowupTask:
    """Give an open task to ``assignee`` (``followup.reassigned``; a supervisor's action)."""
    now = await ctx.clock.now()

    async def in_its_unit(uow: FollowupUnitOfWork) -> FollowupTask:
        task = await _locked_open_task(uow, task_id, may_act, actor.id)
        if task.assignee == assignee:
            raise _Unchanged(task)
        data = FollowupReassigned(
            task_id=str(task.id),
            from_assignee=task.assignee,
            to_assignee=assignee,
            reason=reason,
        ).model_dump(mode="json", exclude_none=True)
        return await _record_action(
            uow, ctx, task, FOLLOWUP_REASSIGNED, now, actor, data, submitted_by
        )

    try:
        # a rerun takes first the products a re-projection in it wanted (D-15)
        return await in_a_unit_products_first(ctx.units, in_its_unit)
    except _Unchanged as unchanged:
        return unchanged.task


class _Unchanged(Exception):
    """Ends a unit that changed nothing (a task given to the assignee it has, a completion
    sent again) by rolling it back: its answer, the task as it is, then does not hang on a
    ``COMMIT``, whose loss could not be asked about (no event to ask by) and was answered 503
    (#12)."""

    def __init__(self, task: FollowupTask) -> None:
        super().__init__(str(task.id))
        self.task = task
