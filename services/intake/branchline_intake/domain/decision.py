"""``decide``: may this event be appended to the client's stream? (ADR-0005)

Pure: the state (rebuilt from the stream), the candidate event and the policy in; an
:class:`Accepted` (with the event to append, possibly completed by the domain) or a
:class:`Refused` (with the :class:`~.violations.RuleViolation` and its rule id) out.

Order of the checks: ``occurred_at`` within its bounds (D-05b), the client must be registered
(D-09), then the rules of the sub-aggregate the event belongs to (D-01/D-01a/D-03 visits, D-02
appointments, D-06 consultations, D-07 complaints, D-03/D-05/D-13/D-14/D-16 products, D-04/D-05
the client's own events). Product and staff records (their own streams) are decided by
:func:`decide_shelf_event` and :func:`decide_staff_event`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeAlias, cast

from branchline_intake.domain.appointment import check_appointment_event
from branchline_intake.domain.backdating import check_timing
from branchline_intake.domain.client import check_client_event, check_registration
from branchline_intake.domain.complaint import check_complaint_event
from branchline_intake.domain.consultation import check_consultation_event
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.kinds import KindOf
from branchline_intake.domain.policy import DEFAULT_POLICY, IntakePolicy
from branchline_intake.domain.product import check_product_event
from branchline_intake.domain.related import NOTHING_RELATED, Related
from branchline_intake.domain.shelf import ShelfProduct, check_shelf_event
from branchline_intake.domain.staff import StaffMember, check_staff_event
from branchline_intake.domain.state import ClientState
from branchline_intake.domain.violations import RuleViolation, RuleViolationError
from branchline_intake.domain.visit import check_survey, check_visit_event
from branchline_shared.events.catalogue import (
    AppointmentEvent,
    ComplaintEvent,
    ConsultationEvent,
    EventPayload,
    FeedbackSurveyAnswered,
    ProductEvent,
    RuleViolationRefused,
    VisitEvent,
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """Append ``event`` (the candidate, possibly completed: a risk assessment's validity, a
    sale's as-of proof)."""

    event: DomainEvent

    @property
    def accepted(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Refused:
    """Append nothing but the record of the refusal (see :mod:`.refusal`)."""

    violation: RuleViolation

    @property
    def accepted(self) -> bool:
        return False


Decision: TypeAlias = Accepted | Refused


def decide(
    state: ClientState,
    candidate: DomainEvent,
    policy: IntakePolicy = DEFAULT_POLICY,
    related: Related = NOTHING_RELATED,
) -> Decision:
    """Whether ``candidate`` may follow the client's history ``state``, by the rules of the
    standard; ``related``: the shelf products and staff records it refers to. Never raises
    for a rule; pure and deterministic."""
    try:
        payload = _checked_payload(state, candidate, policy, related)
    except RuleViolationError as error:
        return Refused(error.violation)
    return _accepted(candidate, payload)


def decide_shelf_event(
    product: ShelfProduct, candidate: DomainEvent, policy: IntakePolicy = DEFAULT_POLICY
) -> Decision:
    """D-05b and D-13 for an event of the product shelf (``product.*`` governance)."""
    try:
        check_timing(candidate, policy)
        payload = check_shelf_event(product, candidate)
    except RuleViolationError as error:
        return Refused(error.violation)
    return _accepted(candidate, payload)


def decide_staff_event(
    member: StaffMember, candidate: DomainEvent, policy: IntakePolicy = DEFAULT_POLICY
) -> Decision:
    """D-05b and D-14 for an event of a member of staff's records."""
    try:
        check_timing(candidate, policy)
        payload = check_staff_event(member, candidate)
    except RuleViolationError as error:
        return Refused(error.violation)
    return _accepted(candidate, payload)


def _accepted(candidate: DomainEvent, payload: EventPayload) -> Accepted:
    if payload is candidate.payload:
        return Accepted(candidate)
    return Accepted(replace(candidate, payload=payload))


_GUARDED = KindOf(
    RuleViolationRefused,
    VisitEvent,
    AppointmentEvent,
    ConsultationEvent,
    ComplaintEvent,
    ProductEvent,
    FeedbackSurveyAnswered,
)
"""The classes whose guards ``_checked_payload`` picks, in the order it checks them."""


def _checked_payload(
    state: ClientState, candidate: DomainEvent, policy: IntakePolicy, related: Related
) -> EventPayload:
    """Run the guards of ``candidate``; the payload to record, or RuleViolationError."""
    payload = candidate.payload
    kind = _GUARDED(payload)  # the isinstance chain's answer, asked once per class (#12)
    if kind is RuleViolationRefused:
        return payload
    approval = check_timing(candidate, policy, state.client.late_entry_approvals)
    check_registration(state.client, candidate)
    if kind is VisitEvent:
        check_visit_event(state.visits, state.client, candidate, policy)
    elif kind is AppointmentEvent:
        check_appointment_event(state.appointments, candidate)
    elif kind is ConsultationEvent:
        check_consultation_event(state.consultations, candidate)
    elif kind is ComplaintEvent:
        check_complaint_event(state.complaints, candidate)
    elif kind is ProductEvent:
        return check_product_event(
            state.products, state.client, candidate, policy, related, approval
        )
    elif kind is FeedbackSurveyAnswered:
        check_survey(state.visits, cast(FeedbackSurveyAnswered, payload))
    else:
        return check_client_event(state.client, candidate, policy)
    return payload
