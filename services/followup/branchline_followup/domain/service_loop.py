"""The rules that close the service loop: every piece of feedback answered (D-07), promises
kept or renegotiated in time (D-17), corrective actions tracked to done (D-17) and the end of
the relationship (D-09).

Same shape as :mod:`.rules` (a class per rule with its event types and a pure ``decide``);
:data:`SERVICE_LOOP_RULES` is appended to :data:`.rules.RULES`.

Task subjects: ``feedback:<event id of the feedback>``, ``complaint:<id>`` (a progress promise
shares its complaint's subject), ``corrective_action:<complaint id>:<action id>``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.opening import (
    cancel,
    complete,
    open_for_event,
    open_of,
    owner,
    reschedule,
)
from branchline_followup.domain.payloads import read_payload
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import (
    ClientContext,
    FollowupTask,
    TaskCommand,
)
from branchline_followup.domain.vocabulary import TaskKind, TaskRule
from branchline_shared.events import catalogue as c
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded

FEEDBACK_SURVEY_ANSWERED = c.EventType.FEEDBACK_SURVEY_ANSWERED.value
FEEDBACK_RECEIVED = c.EventType.FEEDBACK_RECEIVED.value
FEEDBACK_RESPONDED = c.EventType.FEEDBACK_RESPONDED.value
PROGRESS_REPORTED = c.EventType.COMPLAINT_PROGRESS_REPORTED.value
COMPLAINT_RESOLVED = c.EventType.COMPLAINT_RESOLVED.value
COMPLAINT_RENEGOTIATED = c.EventType.COMPLAINT_PROMISE_RENEGOTIATED.value
CONSULTATION_RENEGOTIATED = c.EventType.CONSULTATION_PROMISE_RENEGOTIATED.value
ACTION_PLANNED = c.EventType.COMPLAINT_CORRECTIVE_ACTION_PLANNED.value
ACTION_COMPLETED = c.EventType.COMPLAINT_CORRECTIVE_ACTION_COMPLETED.value
ACCOUNT_CLOSED = c.EventType.CLIENT_ACCOUNT_CLOSED.value

PROMISE_KINDS: frozenset[TaskKind] = frozenset(
    {TaskKind.CONSULTATION_PROMISE, TaskKind.COMPLAINT_PROGRESS_PROMISE}
)
"""Tasks that hold a deadline promised to the client (D-17: kept, renegotiated or missed)."""

ENDED_WITH_THE_RELATIONSHIP: frozenset[TaskKind] = frozenset(
    {TaskKind.PRODUCT_REVIEW, TaskKind.KYC_REFRESH}
)
"""Tasks that have no object once the account is closed (no holdings left to review, no
relationship whose due diligence is refreshed, D-03)."""


def feedback_subject(event_id: uuid.UUID) -> str:
    return f"feedback:{event_id}"


def corrective_action_subject(complaint_id: str, action_id: str) -> str:
    return f"corrective_action:{complaint_id}:{action_id}"


def _at(event: RecordedEvent) -> datetime:
    return require_aware(event.occurred_at)


def needs_response(survey: c.FeedbackSurveyAnswered, low_score: int) -> bool:
    """D-07: a survey needs a response when it carries a comment (sealed: only its presence
    counts) or any dimension scored below ``low_score``."""
    if survey.comment is not None:
        return True
    return any(score < low_score for score in survey.scores.model_dump().values())


class FeedbackResponseRule:
    """D-07: every piece of feedback is responded to within ``feedback_response_within``
    (24 hours), not only complaints.

    - ``feedback.survey_answered`` with a comment or a low score (any dimension below
      ``feedback_low_score``, 60) and every ``feedback.received``: a response task for the RM;
    - ``feedback.responded`` (``responds_to_event_id``) completes it, as does completing the task
      through the API (``followup.completed`` records the response: outcome and sealed note).
    """

    rule: ClassVar[TaskRule] = TaskRule.COMPLAINT
    event_types: ClassVar[frozenset[str]] = frozenset(
        {FEEDBACK_SURVEY_ANSWERED, FEEDBACK_RECEIVED, FEEDBACK_RESPONDED}
    )

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        if event.type == FEEDBACK_SURVEY_ANSWERED:
            survey = read_payload(typed, c.FeedbackSurveyAnswered, self.rule)
            if not needs_response(survey, policy.feedback_low_score):
                return []
        elif event.type == FEEDBACK_RESPONDED:
            payload = read_payload(typed, c.FeedbackResponded, self.rule)
            subject = feedback_subject(payload.responds_to_event_id)
            return complete(
                open_of(open_tasks, {TaskKind.FEEDBACK_RESPONSE}, subject), event, "responded"
            )
        return [
            open_for_event(
                event,
                policy,
                kind=TaskKind.FEEDBACK_RESPONSE,
                subject=feedback_subject(event.event_id),
                assignee=owner(client, policy),
                due_at=_at(event) + policy.feedback_response_within,
            )
        ]


def _renegotiate(
    promises: Sequence[FollowupTask], event: RecordedEvent, promised_by: datetime
) -> list[TaskCommand]:
    """D-17: an open promise renegotiated *before* its deadline moves to the new one; one
    renegotiated after it passed stays missed (intake refuses that; a replay of an old stream
    must still not turn a miss into a kept promise)."""
    at = _at(event)
    return reschedule(
        promises,
        lambda _: require_aware(promised_by, "promised_by"),
        cause_event_id=event.event_id,
        reason="renegotiated with the client",
        moves=lambda t, _: at < t.due_at,
    )


class PromiseRule:
    """D-17 promises to a client.

    - ``complaint.progress_reported`` with ``next_update_by``: the promised update is due then;
      any report, a resolution or the closure completes the open promise (the client heard);
    - ``complaint.promise_renegotiated`` / ``consultation.promise_renegotiated`` before the
      deadline: the promise's deadline moves to ``promised_by`` (the consultation's promise
      itself is made by :class:`~.rules.ConsultationRule`).
    A promise whose deadline passes without renegotiation goes overdue like any task and counts
    as missed in the D-12 measures.
    """

    rule: ClassVar[TaskRule] = TaskRule.IMPROVEMENT
    event_types: ClassVar[frozenset[str]] = frozenset(
        {PROGRESS_REPORTED, COMPLAINT_RESOLVED, COMPLAINT_RENEGOTIATED, CONSULTATION_RENEGOTIATED}
    )

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        payload = read_payload(typed, c.EventPayload, self.rule)
        if isinstance(payload, c.ConsultationPromiseRenegotiated):
            subject = f"consultation:{payload.consultation_id}"
            promises = open_of(open_tasks, {TaskKind.CONSULTATION_PROMISE}, subject)
            return _renegotiate(promises, event, payload.promised_by)
        if not isinstance(payload, c.ComplaintEvent):
            return []
        subject = f"complaint:{payload.complaint_id}"
        promises = open_of(open_tasks, {TaskKind.COMPLAINT_PROGRESS_PROMISE}, subject)
        if isinstance(payload, c.ComplaintPromiseRenegotiated):
            return _renegotiate(promises, event, payload.promised_by)
        commands = complete(promises, event, "client updated")
        if isinstance(payload, c.ComplaintProgressReported) and payload.next_update_by:
            holder = promises[0].assignee if promises else owner(client, policy)
            commands.append(
                open_for_event(
                    event,
                    policy,
                    kind=TaskKind.COMPLAINT_PROGRESS_PROMISE,
                    subject=subject,
                    assignee=holder,
                    due_at=payload.next_update_by,
                )
            )
        return commands


class CorrectiveActionRule:
    """D-17: a planned corrective action is a task of its owner, due at its deadline, done when
    ``complaint.corrective_action_completed`` is recorded (or the owner completes the task). It
    outlives the complaint: closing the complaint leaves it open."""

    rule: ClassVar[TaskRule] = TaskRule.IMPROVEMENT
    event_types: ClassVar[frozenset[str]] = frozenset({ACTION_PLANNED, ACTION_COMPLETED})

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        payload = read_payload(typed, c.ComplaintEvent, self.rule)
        if not isinstance(
            payload, c.ComplaintCorrectiveActionPlanned | c.ComplaintCorrectiveActionCompleted
        ):
            return []
        subject = corrective_action_subject(payload.complaint_id, payload.action_id)
        if isinstance(payload, c.ComplaintCorrectiveActionCompleted):
            return complete(
                open_of(open_tasks, {TaskKind.CORRECTIVE_ACTION}, subject), event, "action done"
            )
        return [
            open_for_event(
                event,
                policy,
                kind=TaskKind.CORRECTIVE_ACTION,
                subject=subject,
                assignee=payload.owner_id,
                due_at=payload.due_at,
            )
        ]


class AccountClosureRule:
    """D-09: on ``client.account_closed`` the tasks that only make sense while the client holds
    products are cancelled; the lifecycle moves to churned (the revisit plan then becomes one
    win-back contact, D-08). Feedback, complaint and corrective-action tasks keep running."""

    rule: ClassVar[TaskRule] = TaskRule.LIFECYCLE
    event_types: ClassVar[frozenset[str]] = frozenset({ACCOUNT_CLOSED})

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        return cancel(
            open_of(open_tasks, ENDED_WITH_THE_RELATIONSHIP), typed.envelope, "account closed"
        )


SERVICE_LOOP_RULES = (
    FeedbackResponseRule(),
    PromiseRule(),
    CorrectiveActionRule(),
    AccountClosureRule(),
)
