"""The follow-up rules: which events make a task due, and which satisfy, cancel or move one.

Every rule is a small class with the event types it reacts to and a pure ``decide``; the
:func:`decide` function runs them all for one event. Inputs are the recorded event (its
``data`` read by the docs/api.md catalogue's field names), the client's current read state, the
client's open tasks (as they were *before* this event) and the :class:`FollowupPolicy`.
Deadlines run from the event's ``occurred_at`` (ADR-0008).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import ClassVar, Protocol

from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.due_diligence import KycRefreshRule
from branchline_followup.domain.jurisdictions import complaint_deadlines, decision_deadline
from branchline_followup.domain.opening import (
    CLIENT_SUBJECT,
    cancel,
    complete,
    earlier,
    later,
    open_for_event,
    open_of,
    open_task,
    owner,
    reschedule,
)
from branchline_followup.domain.payloads import InvalidEventData, read_payload
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.rules_privacy import DataAccessRequestRule
from branchline_followup.domain.service_loop import SERVICE_LOOP_RULES
from branchline_followup.domain.tasks import (
    CancelTask,
    ClientContext,
    CreateTask,
    FollowupTask,
    ReassignTask,
    TaskCommand,
)
from branchline_followup.domain.vocabulary import (
    COMPLAINT_RESOLUTION_KINDS,
    CONTACT_PLAN_KINDS,
    LifecycleStage,
    TaskKind,
    TaskRule,
)
from branchline_shared.events import catalogue as c
from branchline_shared.events.catalogue import EventType
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded

__all__ = ["HANDLED_EVENT_TYPES", "RULES", "InvalidEventData", "decide", "on_stage_changed"]

FOLLOWUP_COMPLETED = EventType.FOLLOWUP_COMPLETED.value
"""Emitted by the followup service when an RM completes a task (``POST /v1/followups/{id}/
complete``); ``data``: ``task_id``, ``outcome``, ``note?``, ``next_contact_at?``, ``scores?``,
and optionally ``kind`` (the completed task's kind)."""


def _occurred(event: RecordedEvent) -> datetime:
    return require_aware(event.occurred_at)


class FollowupRule(Protocol):
    rule: ClassVar[TaskRule]
    event_types: ClassVar[frozenset[str]]

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]: ...


class SatisfactionSurveyRule:
    """D-01b: a satisfaction survey is due ``survey_within`` (3 days) after every closed visit,
    whatever its outcome; ``feedback.survey_answered`` for that ``visit_id`` satisfies it, and a
    survey without ``visit_id`` satisfies every open survey of the client."""

    rule: ClassVar[TaskRule] = TaskRule.SATISFACTION_SURVEY
    event_types: ClassVar[frozenset[str]] = frozenset(
        {EventType.VISIT_CLOSED, EventType.FEEDBACK_SURVEY_ANSWERED}
    )

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        if event.type == EventType.VISIT_CLOSED:
            visit_id = read_payload(typed, c.VisitClosed, self.rule).visit_id
            return [
                open_for_event(
                    event,
                    policy,
                    kind=TaskKind.SATISFACTION_SURVEY,
                    subject=f"visit:{visit_id}",
                    assignee=owner(client, policy),
                    due_at=_occurred(event) + policy.survey_within,
                )
            ]
        answered_visit = read_payload(typed, c.FeedbackSurveyAnswered, self.rule).visit_id
        subject = None if answered_visit is None else f"visit:{answered_visit}"
        return complete(
            open_of(open_tasks, {TaskKind.SATISFACTION_SURVEY}, subject), event, "survey answered"
        )


class AppointmentPreparationRule:
    """D-02: booking makes a preparation task due ``appointment_preparation_lead`` (1 hour)
    before ``slot_start``, assigned to ``staff_id``. ``appointment.attended`` completes it (the
    meeting took place; an earlier explicit completion by the staff keeps its own time);
    ``appointment.cancelled`` and ``appointment.no_show`` cancel it; ``appointment.confirmed``
    changes nothing (a confirmation is not a preparation)."""

    rule: ClassVar[TaskRule] = TaskRule.APPOINTMENT
    event_types: ClassVar[frozenset[str]] = frozenset(
        {
            EventType.APPOINTMENT_BOOKED,
            EventType.APPOINTMENT_ATTENDED,
            EventType.APPOINTMENT_CANCELLED,
            EventType.APPOINTMENT_NO_SHOW,
        }
    )

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        payload = read_payload(typed, c.AppointmentEvent, self.rule)
        subject = f"appointment:{payload.appointment_id}"
        if isinstance(payload, c.AppointmentBooked):
            return [
                open_for_event(
                    event,
                    policy,
                    kind=TaskKind.APPOINTMENT_PREPARATION,
                    subject=subject,
                    assignee=payload.staff_id,
                    due_at=payload.slot_start - policy.appointment_preparation_lead,
                )
            ]
        preparations = open_of(open_tasks, {TaskKind.APPOINTMENT_PREPARATION}, subject)
        if isinstance(payload, c.AppointmentAttended):
            return complete(preparations, event, "appointment attended")
        return cancel(preparations, event, event.type.removeprefix("appointment."))


class ConsultationRule:
    """D-06: a consultation on an online channel (``online``, ``app``) must be answered within
    ``online_consultation_response`` (30 s); on any other channel within
    ``offline_consultation_response`` ("as soon as possible": default one day). The channel is
    ``data.channel``, else the envelope's.

    ``consultation.answered`` without ``promised_by`` completes the consultation's open tasks.
    With ``promised_by`` it completes the first response (the client got an answer: a promised
    deadline) and any earlier promise, and makes the promised answer due at ``promised_by``; a
    later ``consultation.answered`` completes that. A re-promise thus closes the previous promise
    at the time of the new one: late if the old deadline had already passed.
    """

    rule: ClassVar[TaskRule] = TaskRule.CONSULTATION
    event_types: ClassVar[frozenset[str]] = frozenset(
        {EventType.CONSULTATION_OPENED, EventType.CONSULTATION_ANSWERED}
    )

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        payload = read_payload(typed, c.ConsultationEvent, self.rule)
        subject = f"consultation:{payload.consultation_id}"
        if isinstance(payload, c.ConsultationOpened):
            channel = payload.channel.value
            within = (
                policy.online_consultation_response
                if channel in policy.online_channels
                else policy.offline_consultation_response
            )
            return [
                open_for_event(
                    event,
                    policy,
                    kind=TaskKind.CONSULTATION_RESPONSE,
                    subject=subject,
                    assignee=owner(client, policy),
                    due_at=_occurred(event) + within,
                )
            ]
        promised_by = read_payload(typed, c.ConsultationAnswered, self.rule).promised_by
        pending = open_of(
            open_tasks,
            {TaskKind.CONSULTATION_RESPONSE, TaskKind.CONSULTATION_PROMISE},
            subject,
        )
        if promised_by is None:
            return complete(pending, event, "answered")
        commands = complete(pending, event, "answer promised")
        assignee = pending[0].assignee if pending else owner(client, policy)
        commands.append(
            open_for_event(
                event,
                policy,
                kind=TaskKind.CONSULTATION_PROMISE,
                subject=subject,
                assignee=assignee,
                due_at=promised_by,
            )
        )
        return commands


class ComplaintRule:
    """D-07: the complaint clocks of the branch's jurisdiction profile.

    - ``complaint.received``: one task per clock of the profile (see
      :func:`complaint_deadlines`), assigned to the client's RM, or, when ``data.topic`` is
      ``personal_data_topic``, to the RM's supervisor. ``data.complex`` (bool) selects the
      longer decision clock of profiles that have one (cn_regulator: 30 days instead of 15).
    - ``complaint.acknowledged``: completes the response; the complaint's other open tasks go
      to ``owner_id``.
    - ``complaint.progress_reported`` with ``complex: true``: the open decision clock moves to
      the complex deadline of the profile stored with the task (never the branch's current one).
    - ``complaint.resolved``: completes the response and resolution clocks; a follow-up is due
      ``complaint_follow_up_after`` (7 days) later, for whoever held the complaint's open
      tasks (else the RM).
    - ``complaint.confirmed_by_client``: completes the follow-up (satisfied or not: the loop's
      confirmation step happened).
    - ``complaint.closed``: completes every open task of the complaint.
    """

    rule: ClassVar[TaskRule] = TaskRule.COMPLAINT
    event_types: ClassVar[frozenset[str]] = frozenset(
        {
            EventType.COMPLAINT_RECEIVED,
            EventType.COMPLAINT_ACKNOWLEDGED,
            EventType.COMPLAINT_PROGRESS_REPORTED,
            EventType.COMPLAINT_RESOLVED,
            EventType.COMPLAINT_CONFIRMED_BY_CLIENT,
            EventType.COMPLAINT_CLOSED,
        }
    )

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        payload = read_payload(typed, c.ComplaintEvent, self.rule)
        subject = f"complaint:{payload.complaint_id}"
        complaint_tasks = [t for t in open_tasks if t.is_open and t.subject == subject]
        match payload:
            case c.ComplaintReceived():
                return self._received(event, payload, client, policy, subject)
            case c.ComplaintAcknowledged(owner_id=new_owner):
                responses = open_of(complaint_tasks, {TaskKind.COMPLAINT_RESPONSE})
                commands = complete(responses, event, "acknowledged")
                commands.extend(
                    ReassignTask(task_id=t.id, assignee=new_owner, cause_event_id=event.event_id)
                    for t in complaint_tasks
                    if t.kind is not TaskKind.COMPLAINT_RESPONSE and t.assignee != new_owner
                )
                return commands
            case c.ComplaintProgressReported(complex=complex_case):
                if not complex_case:
                    return []
                return self._extend_for_complexity(event, complaint_tasks, policy)
            case c.ComplaintResolved():
                clocks = open_of(
                    complaint_tasks, COMPLAINT_RESOLUTION_KINDS | {TaskKind.COMPLAINT_RESPONSE}
                )
                commands = complete(clocks, event, "resolved")
                holder = _holder(complaint_tasks)
                commands.append(
                    open_for_event(
                        event,
                        policy,
                        kind=TaskKind.COMPLAINT_FOLLOW_UP,
                        subject=subject,
                        assignee=holder or owner(client, policy),
                        due_at=_occurred(event) + policy.complaint_follow_up_after,
                    )
                )
                return commands
            case c.ComplaintConfirmedByClient():
                follow_ups = open_of(complaint_tasks, {TaskKind.COMPLAINT_FOLLOW_UP})
                return complete(follow_ups, event, "confirmed by client")
            case _:  # complaint.closed
                return complete(complaint_tasks, event, "complaint closed")

    def _received(
        self,
        event: RecordedEvent,
        payload: c.ComplaintReceived,
        client: ClientContext,
        policy: FollowupPolicy,
        subject: str,
    ) -> list[TaskCommand]:
        severity = payload.severity
        assignee = owner(client, policy)
        if payload.topic == policy.personal_data_topic:
            assignee = (
                policy.supervisor_of(client.rm_id) if client.rm_id else policy.default_supervisor_id
            )
        profile = policy.profile_for(event.branch_id)
        deadlines = complaint_deadlines(
            _occurred(event),
            severity,
            complex_case=payload.complex,
            clocks=policy.clocks_of(profile),
            calendar=policy.calendar_for(event.branch_id),
        )
        return [
            open_for_event(
                event,
                policy,
                kind=deadline.kind,
                subject=subject,
                assignee=assignee,
                due_at=deadline.due_at,
                profile=profile,
            )
            for deadline in deadlines
        ]

    def _extend_for_complexity(
        self, event: RecordedEvent, complaint_tasks: list[FollowupTask], policy: FollowupPolicy
    ) -> list[TaskCommand]:
        return reschedule(
            open_of(complaint_tasks, {TaskKind.COMPLAINT_DECISION}),
            lambda task: decision_deadline(
                task.opened_at,
                complex_case=True,
                clocks=policy.clocks_of(task.deadline_profile),
                calendar=policy.calendar_for(task.branch_id),
            ),
            cause_event_id=event.event_id,
            reason="complex case",
            moves=later,
        )


def _holder(complaint_tasks: Sequence[FollowupTask]) -> str | None:
    """Who holds a complaint: the assignee of its open resolution clock, else of any open task."""
    ranked = sorted(
        complaint_tasks,
        key=lambda t: (t.kind not in COMPLAINT_RESOLUTION_KINDS, t.opened_at, t.kind.value),
    )
    return ranked[0].assignee if ranked else None


class TaskCompletionRule:
    """``followup.completed`` (an RM completed a task through the API) completes that task."""

    rule: ClassVar[TaskRule] = TaskRule.REVISIT
    event_types: ClassVar[frozenset[str]] = frozenset({FOLLOWUP_COMPLETED})

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        task = _completed_task(typed, open_tasks)
        if task is None:
            return []
        outcome = read_payload(typed, c.FollowupCompleted, self.rule).outcome
        return complete([task], typed.envelope, outcome.value)


def _completed_task(typed: Decoded, open_tasks: Sequence[FollowupTask]) -> FollowupTask | None:
    raw = read_payload(typed, c.FollowupCompleted, TaskRule.REVISIT).task_id
    try:
        task_id = uuid.UUID(raw)
    except ValueError:
        raise InvalidEventData(
            TaskRule.REVISIT, typed.envelope, "task_id", "must be a UUID"
        ) from None
    return next((t for t in open_tasks if t.id == task_id and t.is_open), None)


def _completed_kind(typed: Decoded, open_tasks: Sequence[FollowupTask]) -> TaskKind | None:
    task = _completed_task(typed, open_tasks)
    if task is not None:
        return task.kind
    return read_payload(typed, c.FollowupCompleted, TaskRule.REVISIT).kind


class RevisitRule:
    """D-08 revisits.

    - ``client.registered``: the first revisit is due ``new_client_first_revisit`` (14 days)
      later, for the ``rm_id`` of the event.
    - ``followup.completed`` with ``next_contact_at``: the next revisit is due then (the RM's
      date overrides the cadence), whatever kind of task was completed.
    - ``followup.completed`` of a revisit or win-back without ``next_contact_at``: the next
      revisit is due after the cadence of the client's stage (high_net_worth 30 days, others
      90); a churned client gets none (its one win-back contact is planned by
      :func:`on_stage_changed`).
    A new plan cancels any other open revisit or win-back of the client (one plan at a time).
    """

    rule: ClassVar[TaskRule] = TaskRule.REVISIT
    event_types: ClassVar[frozenset[str]] = frozenset(
        {EventType.CLIENT_REGISTERED, FOLLOWUP_COMPLETED}
    )

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        if event.type == EventType.CLIENT_REGISTERED:
            registered = read_payload(typed, c.ClientRegistered, self.rule)
            return [
                open_for_event(
                    event,
                    policy,
                    kind=TaskKind.REVISIT,
                    subject=CLIENT_SUBJECT,
                    assignee=registered.rm_id,
                    due_at=_occurred(event) + policy.new_client_first_revisit,
                )
            ]
        next_contact_at = read_payload(typed, c.FollowupCompleted, self.rule).next_contact_at
        due_at = next_contact_at
        if due_at is None:
            if _completed_kind(typed, open_tasks) not in CONTACT_PLAN_KINDS:
                return []
            cadence = policy.cadence_for(client.stage)
            if cadence is None:
                return []
            due_at = _occurred(event) + cadence
        completed = _completed_task(typed, open_tasks)
        superseded = [
            t
            for t in open_of(open_tasks, CONTACT_PLAN_KINDS, CLIENT_SUBJECT)
            if completed is None or t.id != completed.id
        ]
        commands = cancel(superseded, event, "replaced by a new contact plan")
        commands.append(
            open_for_event(
                event,
                policy,
                kind=TaskKind.REVISIT,
                subject=CLIENT_SUBJECT,
                assignee=owner(client, policy),
                due_at=due_at,
            )
        )
        return commands


class ProductReviewRule:
    """D-08: a product sale makes a performance review due ``product_review_every`` (90 days)
    later; completing a review makes the next one due (while ``product_review_recurring``)."""

    rule: ClassVar[TaskRule] = TaskRule.REVISIT
    event_types: ClassVar[frozenset[str]] = frozenset({EventType.PRODUCT_SOLD, FOLLOWUP_COMPLETED})

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        if event.type == EventType.PRODUCT_SOLD:
            subject = f"product:{read_payload(typed, c.ProductSold, self.rule).product_id}"
        else:
            completed = _completed_task(typed, open_tasks)
            if (
                completed is None
                or completed.kind is not TaskKind.PRODUCT_REVIEW
                or not policy.product_review_recurring
            ):
                return []
            subject = completed.subject
        return [
            open_for_event(
                event,
                policy,
                kind=TaskKind.PRODUCT_REVIEW,
                subject=subject,
                assignee=owner(client, policy),
                due_at=_occurred(event) + policy.product_review_every,
            )
        ]


RULES: tuple[FollowupRule, ...] = (
    TaskCompletionRule(),
    SatisfactionSurveyRule(),
    AppointmentPreparationRule(),
    ConsultationRule(),
    ComplaintRule(),
    RevisitRule(),
    ProductReviewRule(),
    *SERVICE_LOOP_RULES,
    DataAccessRequestRule(),
    KycRefreshRule(),
)
"""Every rule, in the order their commands are applied (a completion before its follow-ons)."""

HANDLED_EVENT_TYPES: frozenset[str] = frozenset().union(*(r.event_types for r in RULES))

_RULES_OF_TYPE: dict[str, tuple[FollowupRule, ...]] = {
    event_type: tuple(r for r in RULES if event_type in r.event_types)
    for event_type in HANDLED_EVENT_TYPES
}
"""The rules reacting to each event type, in :data:`RULES`' order (#12: one look-up per event
instead of asking every rule)."""


def decide(
    typed: Decoded,
    client: ClientContext,
    open_tasks: Sequence[FollowupTask],
    policy: FollowupPolicy,
) -> tuple[TaskCommand, ...]:
    """The task commands one event gives, in the order they must be applied.

    ``open_tasks`` are the client's open tasks before this event. Tasks that this very event
    created are ignored, so a redelivered event yields the same commands and changes nothing.
    """
    event = typed.envelope
    if client.client_id != event.client_id:
        raise ValueError(f"client context {client.client_id!r} is not the event's client")
    relevant = [
        t
        for t in open_tasks
        if t.is_open and t.client_id == event.client_id and t.source_event_id != event.event_id
    ]
    commands: list[TaskCommand] = []
    for rule in _RULES_OF_TYPE.get(event.type, ()):
        commands.extend(rule.decide(typed, client, relevant, policy))
    return tuple(commands)


def on_stage_changed(
    client: ClientContext,
    previous: LifecycleStage,
    *,
    at: datetime,
    cause_event_id: uuid.UUID,
    open_tasks: Sequence[FollowupTask],
    policy: FollowupPolicy,
) -> tuple[TaskCommand, ...]:
    """D-08 consequences of the client's lifecycle stage changing from ``previous`` to
    ``client.stage`` at ``at`` (D-09).

    - became churned: open revisits are cancelled and one win-back contact is due
      ``win_back_within`` later;
    - left churned (business again): an open win-back is cancelled and a revisit is due after
      the new stage's cadence;
    - otherwise an open revisit due later than the new stage's cadence is moved earlier
      (e.g. new → high_net_worth: within 30 days).

    ``cause_event_id`` names the event the change follows from; for churn by inactivity use the
    client's last business event, so a re-run gives the same task ids.
    """
    at = require_aware(at, "at")
    current = client.stage
    if current is previous:
        return ()
    contacts = [
        t
        for t in open_of(open_tasks, CONTACT_PLAN_KINDS, CLIENT_SUBJECT)
        if t.client_id == client.client_id and t.source_event_id != cause_event_id
    ]

    def create(kind: TaskKind, due_at: datetime) -> CreateTask:
        return open_task(
            policy,
            kind=kind,
            cause_event_id=cause_event_id,
            client_id=client.client_id,
            branch_id=client.branch_id,
            assignee=owner(client, policy),
            subject=CLIENT_SUBJECT,
            opened_at=at,
            due_at=due_at,
        )

    def close(tasks: Iterable[FollowupTask], reason: str) -> list[TaskCommand]:
        return [
            CancelTask(task_id=t.id, at=at, cause_event_id=cause_event_id, reason=reason)
            for t in tasks
        ]

    if current is LifecycleStage.CHURNED:
        commands = close(contacts, "client churned")
        commands.append(create(TaskKind.WIN_BACK, at + policy.win_back_within))
        return tuple(commands)
    cadence = policy.cadence_for(current)
    if previous is LifecycleStage.CHURNED:
        commands = close(contacts, "client active again")
        if cadence is not None:
            commands.append(create(TaskKind.REVISIT, at + cadence))
        return tuple(commands)
    if cadence is None:
        return ()
    return tuple(
        reschedule(
            (t for t in contacts if t.kind is TaskKind.REVISIT),
            lambda _: at + cadence,
            cause_event_id=cause_event_id,
            reason=f"stage {current.value}",
            moves=earlier,
        )
    )
