"""Applies one event to the read models, effectively once.

The applied event id and every read-model change it causes are one transaction: a redelivered
event finds its id recorded and changes nothing (ADR-0003). :func:`project` runs inside the
caller's transaction, so the same code serves the worker (events from Kafka), the API and
the timer runner (``followup.*`` events applied where they are recorded, in the transaction
that appends them to the event store; their Kafka copy then finds its id applied) and the
rebuild (the same events replayed into a fresh schema).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Collection
from dataclasses import dataclass, replace
from datetime import datetime

from branchline_followup.application import staff_events, suitability
from branchline_followup.application.ports import FollowupUnitOfWork, UnitsOfWork
from branchline_followup.application.reprojection import ProductsFirst, reproject_client
from branchline_followup.application.task_creations import (
    TASK_CREATED,
    PendingCreations,
    settle_created_tasks,
)
from branchline_followup.domain import (
    BUSINESS_EVENT_TYPES,
    FOLLOWUP_ESCALATED,
    FOLLOWUP_OVERDUE,
    HANDLED_EVENT_TYPES,
    ClientContext,
    FollowupPolicy,
    FollowupTask,
    LifecycleStage,
    ReassignTask,
    TaskCommand,
    TimerKind,
    apply_commands,
    client_context,
    decide,
    mark_escalated,
    on_stage_changed,
    timer_id_for,
    timers_for,
)
from branchline_followup.domain.records import ClientFacts
from branchline_shared.domain.classification import risk_level, stage_and_next_change
from branchline_shared.domain.ids import name_uuid
from branchline_shared.events import catalogue as c
from branchline_shared.events.catalogue import EventType
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded, decode, payload_as
from branchline_shared.kafka.wire import SourcePosition

STAGE_CHANGE_NAMESPACE = uuid.UUID("3c9e2f41-7b0d-5a6e-8f12-4d5b6c7a8e90")
"""UUID v5 namespace of the cause of a stage change by time of a client without a recorded
business event (fixed forever)."""

FOLLOWUP_REASSIGNED = EventType.FOLLOWUP_REASSIGNED.value
FOLLOWUP_COMPLETED = EventType.FOLLOWUP_COMPLETED.value

CONTACT_EVENT_TYPES = frozenset(
    {
        EventType.VISIT_ARRIVED,
        EventType.VISIT_CLOSED,
        EventType.APPOINTMENT_ATTENDED,
        EventType.CONSULTATION_OPENED,
        EventType.CONSULTATION_ANSWERED,
        EventType.COMPLAINT_RECEIVED,
        EventType.COMPLAINT_ACKNOWLEDGED,
        EventType.COMPLAINT_PROGRESS_REPORTED,
        EventType.COMPLAINT_RESOLVED,
        EventType.COMPLAINT_CONFIRMED_BY_CLIENT,
        EventType.FEEDBACK_SURVEY_ANSWERED,
        FOLLOWUP_COMPLETED,
    }
)
"""Events in which the institution and the client were in touch (the 360's last contact)."""


@dataclass(frozen=True)
class Projection:
    """What :func:`project` needs besides the event and the unit of work it writes in (which
    knows the schema being written: live or a rebuild's)."""

    policy: FollowupPolicy
    task_creations_topic: str | None = None
    """Where recorded task creations are published (live processes); ``None``: creations are
    only replayed, never recorded (a rebuild)."""


NOT_PROJECTED = frozenset({EventType.CLIENT_DATA_READ})
"""Records about the client, not facts of the client: a read changes nothing of the views."""


def locks_client(event: RecordedEvent) -> bool:
    """Whether :func:`project` takes the lock of the event's client (and reads its facts)."""
    return (
        event.client_id is not None
        and event.type != TASK_CREATED
        and event.type not in NOT_PROJECTED
    )


def only_marked(event: RecordedEvent) -> bool:
    """Whether :func:`project` only records ``event`` as applied (its payload never read): a
    recorded task creation, a record about the client. A consumer that receives many of them
    (a rebuild replays every creation) may record them with :func:`mark_only`, undecoded."""
    return event.type == TASK_CREATED or event.type in NOT_PROJECTED


async def mark_only(
    uow: FollowupUnitOfWork, event: RecordedEvent, position: SourcePosition | None = None
) -> bool:
    """What :func:`project` does with an event :func:`only_marked` says it only marks."""
    if not only_marked(event):
        raise ValueError(f"{event.type} {event.event_id} is projected: decode it first")
    return await uow.mark_applied(event, position)


def may_open_tasks(event: RecordedEvent) -> bool:
    """Whether the rules decide on the event (tasks it may make due carry its id; a stage
    change by an event of another type does too, found when asked)."""
    return event.type in HANDLED_EVENT_TYPES


async def apply_event(
    units: UnitsOfWork,
    event: Decoded,
    projection: Projection,
    position: SourcePosition | None = None,
) -> bool:
    """Apply ``event`` in its own unit of work; False when it had already been applied (run
    again with the products a re-projection in it wanted locked first, D-15)."""

    async def in_a_unit(products: frozenset[str]) -> bool:
        async with units.begin() as uow:
            return await project(uow, event, projection, position, products_first=products)

    return await ProductsFirst().run(in_a_unit)


async def project(
    uow: FollowupUnitOfWork,
    typed: Decoded,
    projection: Projection,
    position: SourcePosition | None = None,
    *,
    marked: bool = False,
    creations: PendingCreations | None = None,
    products_first: Collection[str] = (),
) -> bool:
    """Apply ``event`` within the caller's unit of work; False when it had been applied.
    ``position`` (where its store put it) is recorded for reconciliation. A batch (#12)
    passes ``marked`` when it recorded the event as applied itself (one statement for the
    batch: this call then applies it) and ``creations`` to record the task creations it
    decides when the unit ends (:class:`~.task_creations.PendingCreations`).
    ``products_first``: products to lock with the event's own (not ``marked``), those a
    re-projection wanted in an earlier run (:class:`~.reprojection.ProductLocksWanted`)."""
    event = typed.envelope
    if not marked:
        # a batch took them for all its events (D-15: before any client's, see batches)
        products = sorted(set(suitability.products_rated_or_sold([event])) | set(products_first))
        if products:
            await uow.lock_products(products)
        if not await uow.mark_applied(event, position):
            return False
    if event.type == TASK_CREATED:
        # The record of a creation the rules made (and replay from it): applied where it was
        # recorded, so its Kafka copy (and a rebuild) changes nothing else.
        return True
    if event.type in NOT_PROJECTED:
        return True
    if event.client_id is not None:
        await uow.lock_client(event.client_id)
        # #13: kept in the client's journal; one that arrives after a later event of its
        # store makes the client be projected again in source order (ADR-0014).
        if await uow.journal.keep(event, position):
            await _reproject(uow, event.client_id, projection, creations)
            return True
    await _project_kept(uow, typed, projection, creations)
    return True


async def _reproject(
    uow: FollowupUnitOfWork,
    client_id: str,
    projection: Projection,
    creations: PendingCreations | None = None,
) -> None:
    previous = await uow.clients.get(client_id)

    def apply(u: FollowupUnitOfWork, e: RecordedEvent) -> Awaitable[None]:
        # the creations its batch has not recorded yet are found as recorded (#12); each
        # journaled event is received again here, so decoded here (an unreadable one fails
        # its savepoint and is skipped, as a rebuild skips it)
        return _project_kept(u, decode(e), projection, creations)

    await reproject_client(uow, client_id, apply)
    if previous is not None and previous.stage_as_of is not None:
        # Stage changes by time are no events: those the timer runner had made (up to where
        # the stage was) are made again, with their recorded task creations (D-07, D-09).
        await apply_client_stage_changes(
            uow,
            client_id,
            previous.stage_as_of,
            projection.policy,
            topic=projection.task_creations_topic,
            creations=creations,
        )


async def _project_kept(
    uow: FollowupUnitOfWork,
    typed: Decoded,
    projection: Projection,
    creations: PendingCreations | None = None,
) -> None:
    """What the event changes in the read models (marked applied and kept already; a client's
    lock held)."""
    event = typed.envelope
    await uow.activity.record_refusal(typed)
    if event.client_id is None:
        # Product-shelf and staff events (D-13, D-14, D-16) have no client of their own; a
        # rating may make reviews due for the product's holders (D-15), an accepted gift an
        # escalation for the giver's record (D-16).
        def save(
            u: FollowupUnitOfWork,
            before: dict[uuid.UUID, FollowupTask],
            after: dict[uuid.UUID, FollowupTask],
        ) -> Awaitable[None]:
            return _save_changed_tasks(
                u, before, after, projection.policy, projection.task_creations_topic, creations
            )

        await suitability.on_product_event(uow, typed, projection.policy, save)
        await staff_events.on_staff_event(uow, typed, projection.policy, save)
        return
    client_id = event.client_id
    await uow.activity.record_console(typed, client_id)
    policy = projection.policy
    at = event.occurred_at
    facts = await uow.clients.get(client_id)
    if facts is not None:
        # Stage changes by time that were due by this event's instant happen first, as the
        # timer runner would have made them: the result does not depend on whether it ran
        # before this event arrived (rebuild == incremental).
        await apply_stage_changes(
            uow,
            facts,
            event.occurred_at,
            policy,
            topic=projection.task_creations_topic,
            creations=creations,
        )
    previous_stage = LifecycleStage(facts.lifecycle_stage) if facts else LifecycleStage.PROSPECT
    previous_tolerance = facts.risk_tolerance if facts else None
    facts = _updated_facts(facts, typed)
    stage = previous_stage
    if facts is not None:
        # The stage as of the latest event of the client (or the latest stage change by time,
        # if later), not of this one: followup's own events carry past instants (a deadline)
        # and may be applied after later ones, so the stage must not depend on the order
        # (rebuild == incremental).
        at = _later(facts.stage_as_of, facts.last_event_at)
        stage, facts.stage_changes_at = facts.stage_at(at, policy)
        facts.lifecycle_stage = stage.value
        facts.stage_as_of = at
        await uow.clients.save(facts)
    client = client_context(
        client_id,
        facts.rm_id if facts else None,
        stage,
        facts.branch_id if facts and facts.branch_id else event.branch_id,
        facts.risk_level if facts else None,
    )

    before = {t.id: t for t in await uow.tasks.open_of(client_id)}
    # not copied: every step below returns a new mapping when it changes a task, so ``tasks``
    # still being ``before`` means no task changed (#12: most events change none)
    tasks = before
    if event.type in HANDLED_EVENT_TYPES:
        tasks = apply_commands(tasks, decide(typed, client, list(tasks.values()), policy))
    if stage is not previous_stage:
        open_now = [t for t in tasks.values() if t.is_open]
        tasks = apply_commands(
            tasks,
            on_stage_changed(
                client,
                previous_stage,
                at=at,
                cause_event_id=event.event_id,
                open_tasks=open_now,
                policy=policy,
            ),
        )
    tasks = await _apply_followup_event(uow, typed, tasks)
    if facts is not None:
        tasks = await suitability.on_client_event(
            uow, typed, client, previous_tolerance, tasks, policy
        )
    await _save_changed_tasks(
        uow, before, tasks, policy, projection.task_creations_topic, creations
    )
    await _record_quality_facts(uow, typed, facts.rm_id if facts else None)
    await uow.privacy.apply(event)


async def _save_changed_tasks(
    uow: FollowupUnitOfWork,
    before: dict[uuid.UUID, FollowupTask],
    tasks: dict[uuid.UUID, FollowupTask],
    policy: FollowupPolicy,
    topic: str | None = None,
    creations: PendingCreations | None = None,
) -> None:
    if tasks is before:  # no command was applied: nothing to create, save or re-arm (#12)
        return
    created = {
        task_id: t
        for task_id, t in tasks.items()
        if task_id not in before and await uow.tasks.get_caused(task_id, t.source_event_id) is None
    }
    if created:  # most events create none (#12: the tasks then stay as they are)
        # D-07: a deadline once set is never recomputed: replay the recorded creations
        settled, dropped = await settle_created_tasks(uow, created, topic=topic, pending=creations)
        tasks = {k: t for k, t in tasks.items() if k not in dropped} | settled
    # the same object is unchanged: only the tasks a command made are compared (#12), and a
    # new one with nothing (#12: ``None != task`` asked the model's ``__eq__`` first)
    changed = [
        t
        for task_id, t in tasks.items()
        if (b := before.get(task_id)) is not t and (b is None or b != t)
    ]
    if not changed:  # saving and syncing no task writes nothing (#12)
        return
    await uow.tasks.save(changed)
    await uow.timers.sync_all([(task, timers_for(task, policy)) for task in changed])


def _stage_change_cause(facts: ClientFacts, at: datetime) -> uuid.UUID:
    """The event a stage change by time follows from: the client's last business event (so a
    re-run, another runner or a rebuild creates the same task ids)."""
    if facts.last_business_event_id is not None:
        return facts.last_business_event_id
    return name_uuid(STAGE_CHANGE_NAMESPACE, f"{facts.client_id}/{at.isoformat()}")


async def apply_stage_changes(
    uow: FollowupUnitOfWork,
    facts: ClientFacts,
    until: datetime,
    policy: FollowupPolicy,
    *,
    topic: str | None = None,
    creations: PendingCreations | None = None,
) -> int:
    """Make the client's stage changes by time alone (D-09) that are due at or before
    ``until``, in order, each with the tasks it brings (D-08, :func:`on_stage_changed`), and
    store the client with its next stage change; returns how many were due. The caller holds
    the client's lock, within its unit of work. ``facts`` is updated in place."""
    due = 0
    while facts.stage_changes_at is not None and facts.stage_changes_at <= until:
        at = facts.stage_changes_at
        previous = LifecycleStage(facts.lifecycle_stage)
        stage, facts.stage_changes_at = stage_and_next_change(facts.lifecycle(), at, policy)
        facts.lifecycle_stage = stage.value
        facts.stage_as_of = at
        due += 1
        if stage is previous:
            continue
        client = ClientContext(
            client_id=facts.client_id, rm_id=facts.rm_id, stage=stage, branch_id=facts.branch_id
        )
        before = {t.id: t for t in await uow.tasks.open_of(facts.client_id)}
        commands = on_stage_changed(
            client,
            previous,
            at=at,
            cause_event_id=_stage_change_cause(facts, at),
            open_tasks=list(before.values()),
            policy=policy,
        )
        await _save_changed_tasks(
            uow, before, apply_commands(before, commands), policy, topic, creations
        )
    if due:
        await uow.clients.save(facts)
    return due


async def apply_client_stage_changes(
    uow: FollowupUnitOfWork,
    client_id: str,
    until: datetime,
    policy: FollowupPolicy,
    *,
    topic: str | None = None,
    creations: PendingCreations | None = None,
) -> int:
    """:func:`apply_stage_changes` for the stored client ``client_id`` (0 if unknown)."""
    facts = await uow.clients.get(client_id)
    if facts is None:
        return 0
    return await apply_stage_changes(uow, facts, until, policy, topic=topic, creations=creations)


def _later(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


def _updated_facts(facts: ClientFacts | None, typed: Decoded) -> ClientFacts | None:
    """The client's facts after the event (``None``: a client followup does not know yet)."""
    event = typed.envelope
    at = event.occurred_at
    if event.type == EventType.CLIENT_REGISTERED:
        registered = payload_as(typed, c.ClientRegistered)
        if facts is None:
            facts = ClientFacts(
                client_id=event.subject_id,
                client_type=registered.client_type.value,
                rm_id=registered.rm_id,
                branch_id=event.branch_id,
                lifecycle_stage=LifecycleStage.PROSPECT.value,
                registered_at=at,
                last_event_at=at,
            )
        else:
            facts = replace(
                facts,
                client_type=registered.client_type.value,
                rm_id=registered.rm_id,
                branch_id=event.branch_id or facts.branch_id,
            )
    if facts is None:
        return None
    facts.last_event_at = _later(facts.last_event_at, at)
    if event.type in CONTACT_EVENT_TYPES:
        facts.last_contact_at = _later(facts.last_contact_at, at)
    if event.type == EventType.CLIENT_IDENTITY_VERIFIED and facts.identity_verified_at is None:
        facts.identity_verified_at = at
    elif event.type == EventType.CLIENT_RISK_ASSESSED:
        level = payload_as(typed, c.ClientRiskAssessed).level.value
        facts.risk_tolerance = level
        risk = risk_level(level or None)  # D-09, the one table (branchline_shared.domain)
        facts.risk_level = None if risk is None else risk.value
    if event.type in BUSINESS_EVENT_TYPES:
        if facts.first_business_at is None or at < facts.first_business_at:
            facts.first_business_at = at
        if facts.last_business_at is None or at > facts.last_business_at:
            facts.last_business_at = at
            facts.last_business_event_id = event.event_id
    if event.type == EventType.PRODUCT_SOLD:
        facts.assets_under_management += payload_as(typed, c.ProductSold).amount
    elif event.type == EventType.CLIENT_ACCOUNT_CLOSED:  # D-09: the relationship ends
        facts.account_closed_at = at
    elif event.type == EventType.CLIENT_ACCOUNT_REOPENED:
        facts.account_closed_at = None
    return facts


def _task_id(typed: Decoded) -> uuid.UUID | None:
    try:
        return uuid.UUID(payload_as(typed, c.FollowupTaskEvent).task_id)
    except ValueError:
        return None


async def _apply_followup_event(
    uow: FollowupUnitOfWork, typed: Decoded, tasks: dict[uuid.UUID, FollowupTask]
) -> dict[uuid.UUID, FollowupTask]:
    """What the followup service's own events do that the rules do not decide."""
    event = typed.envelope
    if not event.type.startswith("followup."):
        return tasks
    task_id = _task_id(typed)
    if task_id is None:
        return tasks
    if event.type == FOLLOWUP_REASSIGNED:
        command: TaskCommand = ReassignTask(
            task_id=task_id,
            assignee=payload_as(typed, c.FollowupReassigned).to_assignee,
            cause_event_id=event.event_id,
        )
        return apply_commands(tasks, [command])
    if event.type in (FOLLOWUP_OVERDUE, FOLLOWUP_ESCALATED):
        kind = TimerKind.OVERDUE if event.type == FOLLOWUP_OVERDUE else TimerKind.ESCALATE
        fire_at = event.occurred_at
        if kind is TimerKind.ESCALATE or await _still_due_at(uow, tasks, task_id, fire_at):
            await uow.timers.record_fired(
                timer_id=timer_id_for(task_id, kind),
                task_id=task_id,
                client_id=event.subject_id,
                kind=kind.value,
                fire_at=fire_at,
                event_id=event.event_id,
            )
        if kind is TimerKind.OVERDUE:
            await uow.tasks.set_overdue(task_id, event.occurred_at)
            return tasks
        supervisor = payload_as(typed, c.FollowupEscalated).supervisor_id
        task = tasks.get(task_id)
        if task is not None and task.is_open:
            if task.escalated_to is None:
                tasks = {**tasks, task_id: mark_escalated(task, supervisor)}
        else:  # closed before this event was applied (a rebuild's order): same end state
            await uow.tasks.set_escalated(task_id, supervisor)
    elif event.type == FOLLOWUP_COMPLETED:
        await uow.tasks.set_outcome(task_id, payload_as(typed, c.FollowupCompleted).outcome.value)
    return tasks


async def _still_due_at(
    uow: FollowupUnitOfWork,
    tasks: dict[uuid.UUID, FollowupTask],
    task_id: uuid.UUID,
    deadline: datetime,
) -> bool:
    """Whether the task's deadline is still ``deadline`` (or the task is unknown), so the
    overdue event of that deadline is recorded on its timer.

    The worker fires a deadline the task is later moved from (a reschedule recorded before it,
    applied after): the move arms the timer again for the new deadline, and a closure then
    drops it unfired. A rebuild or a client's re-projection applies the move and the closure
    first (source order; followup's own events are recorded later) and must end the same: the
    event of the old deadline leaves the timer as the move and the closure left it, instead
    of creating a fired row the worker does not have."""
    task = tasks.get(task_id)
    if task is None:
        task = await uow.tasks.get(task_id)
    return task is None or task.due_at == deadline


async def _record_quality_facts(uow: FollowupUnitOfWork, typed: Decoded, rm_id: str | None) -> None:
    event = typed.envelope
    at = event.occurred_at
    match event.type:
        case EventType.VISIT_ARRIVED:
            await uow.activity.record_visit(typed, rm_id, arrived_at=at)
        case EventType.VISIT_NEEDS_CONFIRMED:
            await uow.activity.record_visit(
                typed, rm_id, category=payload_as(typed, c.VisitNeedsConfirmed).category.value
            )
        case EventType.VISIT_BUSINESS_HANDLED:
            handled = payload_as(typed, c.VisitBusinessHandled)
            await uow.activity.record_visit(
                typed,
                rm_id,
                started_at=handled.started_at,
                ended_at=handled.ended_at,
            )
        case EventType.VISIT_CLOSED:
            await uow.activity.record_visit(
                typed, rm_id, closed_at=at, outcome=payload_as(typed, c.VisitClosed).outcome.value
            )
        case EventType.FEEDBACK_SURVEY_ANSWERED:
            survey = payload_as(typed, c.FeedbackSurveyAnswered)
            await uow.activity.record_survey(typed, rm_id, survey.visit_id, _scores(survey.scores))
        case EventType.FOLLOWUP_COMPLETED if (
            scores := payload_as(typed, c.FollowupCompleted).scores
        ) is not None:
            await uow.activity.record_survey(typed, rm_id, None, _scores(scores))
        case EventType.COMPLAINT_RECEIVED:
            received = payload_as(typed, c.ComplaintReceived)
            await uow.activity.record_complaint_received(
                typed, rm_id, received.severity.value, received.topic
            )
        case EventType.COMPLAINT_ACKNOWLEDGED:
            await uow.activity.record_complaint_step(
                typed,
                "acknowledged",
                owner_id=payload_as(typed, c.ComplaintAcknowledged).owner_id,
                acknowledged_at=at,
            )
        case EventType.COMPLAINT_RESOLVED:
            await uow.activity.record_complaint_step(typed, "resolved", resolved_at=at)
        case EventType.COMPLAINT_CONFIRMED_BY_CLIENT:
            await uow.activity.record_complaint_step(
                typed,
                "confirmed",
                confirmed_at=at,
                satisfied=payload_as(typed, c.ComplaintConfirmedByClient).satisfied,
            )
        case EventType.COMPLAINT_CLOSED:
            await uow.activity.record_complaint_step(typed, "closed", closed_at=at)
        case _:
            pass
    await uow.activity.record_service_loop_facts(typed, rm_id)


def _scores(scores: c.SatisfactionScores) -> dict[str, float]:
    return {name: float(score) for name, score in scores.model_dump().items()}
