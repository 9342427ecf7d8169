"""The registry: event type → payload model, and what follows from it (the system, governance
and supervisor types, subjects, schema versions, personal paths); parsing a payload by type."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from branchline_shared.events.bounded import STORED
from branchline_shared.events.catalogue import (
    appointment,
    client,
    complaint,
    consultation,
    feedback,
    followup,
    legal_hold,
    privacy,
    product,
    refusal,
    shelf,
    staff,
    visit,
)
from branchline_shared.events.catalogue.base import EventPayload
from branchline_shared.events.catalogue.event_types import EventType
from branchline_shared.events.envelope import Subject

# The models are named through their family modules: the package's ``__init__`` is the one list
# of the catalogue's public names, and this map the one list of which model serves which type.
_MODELS: dict[EventType, type[EventPayload]] = {
    EventType.CLIENT_REGISTERED: client.ClientRegistered,
    EventType.CLIENT_CONSENT_GRANTED: privacy.ClientConsentGranted,
    EventType.CLIENT_CONSENT_WITHDRAWN: privacy.ClientConsentWithdrawn,
    EventType.CLIENT_PERSONAL_DATA_RECORDED: privacy.ClientPersonalDataRecorded,
    EventType.CLIENT_IDENTITY_VERIFIED: client.ClientIdentityVerified,
    EventType.CLIENT_RISK_ASSESSED: client.ClientRiskAssessed,
    EventType.CLIENT_ERASURE_REQUESTED: privacy.ClientErasureRequested,
    EventType.CLIENT_DATA_ACCESS_REQUESTED: privacy.ClientDataAccessRequested,
    EventType.CLIENT_PERSONAL_DATA_ACCESSED: privacy.ClientPersonalDataAccessed,
    EventType.CLIENT_DATA_READ: privacy.ClientDataRead,
    EventType.CLIENT_PERSONAL_DATA_SHREDDED: privacy.ClientPersonalDataShredded,
    EventType.CLIENT_ACCOUNT_CLOSED: client.ClientAccountClosed,
    EventType.CLIENT_ACCOUNT_REOPENED: client.ClientAccountReopened,
    EventType.APPOINTMENT_BOOKED: appointment.AppointmentBooked,
    EventType.APPOINTMENT_CONFIRMED: appointment.AppointmentConfirmed,
    EventType.APPOINTMENT_CANCELLED: appointment.AppointmentCancelled,
    EventType.APPOINTMENT_ATTENDED: appointment.AppointmentAttended,
    EventType.APPOINTMENT_NO_SHOW: appointment.AppointmentNoShow,
    EventType.VISIT_ARRIVED: visit.VisitArrived,
    EventType.VISIT_NEEDS_CONFIRMED: visit.VisitNeedsConfirmed,
    EventType.VISIT_GUIDANCE_GIVEN: visit.VisitGuidanceGiven,
    EventType.VISIT_DOCUMENTS_CHECKED: visit.VisitDocumentsChecked,
    EventType.VISIT_BUSINESS_HANDLED: visit.VisitBusinessHandled,
    EventType.VISIT_NEXT_STEPS_EXPLAINED: visit.VisitNextStepsExplained,
    EventType.VISIT_CLOSED: visit.VisitClosed,
    EventType.CONSULTATION_OPENED: consultation.ConsultationOpened,
    EventType.CONSULTATION_ANSWERED: consultation.ConsultationAnswered,
    EventType.CONSULTATION_PROMISE_RENEGOTIATED: consultation.ConsultationPromiseRenegotiated,
    EventType.PRODUCT_RECOMMENDED: product.ProductRecommended,
    EventType.PRODUCT_RISK_DISCLOSED: product.ProductRiskDisclosed,
    EventType.PRODUCT_TERMS_CONFIRMED: product.ProductTermsConfirmed,
    EventType.PRODUCT_SOLD: product.ProductSold,
    EventType.CLIENT_SCREENED: client.ClientScreened,
    EventType.CLIENT_BENEFICIAL_OWNER_RECORDED: client.ClientBeneficialOwnerRecorded,
    EventType.CLIENT_LATE_ENTRY_APPROVED: client.ClientLateEntryApproved,
    EventType.PRODUCT_APPROVED: shelf.ProductApproved,
    EventType.PRODUCT_RERATED: shelf.ProductRerated,
    EventType.PRODUCT_SUSPENDED: shelf.ProductSuspended,
    EventType.PRODUCT_WITHDRAWN: shelf.ProductWithdrawn,
    EventType.STAFF_QUALIFIED: staff.StaffQualified,
    EventType.STAFF_QUALIFICATION_RENEWED: staff.StaffQualificationRenewed,
    EventType.STAFF_QUALIFICATION_REVOKED: staff.StaffQualificationRevoked,
    EventType.STAFF_TRAINING_RECORDED: staff.StaffTrainingRecorded,
    EventType.STAFF_INTEREST_DECLARED: staff.StaffInterestDeclared,
    EventType.STAFF_GIFT_RECORDED: staff.StaffGiftRecorded,
    EventType.STAFF_ERASURE_REQUESTED: staff.StaffErasureRequested,
    EventType.STAFF_PERSONAL_DATA_SHREDDED: staff.StaffPersonalDataShredded,
    EventType.STAFF_DATA_ACCESS_REQUESTED: staff.StaffDataAccessRequested,
    EventType.STAFF_PERSONAL_DATA_ACCESSED: staff.StaffPersonalDataAccessed,
    EventType.COMPLAINT_RECEIVED: complaint.ComplaintReceived,
    EventType.COMPLAINT_ACKNOWLEDGED: complaint.ComplaintAcknowledged,
    EventType.COMPLAINT_PROGRESS_REPORTED: complaint.ComplaintProgressReported,
    EventType.COMPLAINT_RESOLVED: complaint.ComplaintResolved,
    EventType.COMPLAINT_CONFIRMED_BY_CLIENT: complaint.ComplaintConfirmedByClient,
    EventType.COMPLAINT_CLOSED: complaint.ComplaintClosed,
    EventType.COMPLAINT_PROMISE_RENEGOTIATED: complaint.ComplaintPromiseRenegotiated,
    EventType.COMPLAINT_CORRECTIVE_ACTION_PLANNED: complaint.ComplaintCorrectiveActionPlanned,
    EventType.COMPLAINT_CORRECTIVE_ACTION_COMPLETED: complaint.ComplaintCorrectiveActionCompleted,
    EventType.FEEDBACK_SURVEY_ANSWERED: feedback.FeedbackSurveyAnswered,
    EventType.FEEDBACK_RECEIVED: feedback.FeedbackReceived,
    EventType.FEEDBACK_RESPONDED: feedback.FeedbackResponded,
    EventType.RULE_VIOLATION_REFUSED: refusal.RuleViolationRefused,
    EventType.FOLLOWUP_TASK_CREATED: followup.FollowupTaskCreated,
    EventType.FOLLOWUP_COMPLETED: followup.FollowupCompleted,
    EventType.FOLLOWUP_REASSIGNED: followup.FollowupReassigned,
    EventType.FOLLOWUP_OVERDUE: followup.FollowupOverdue,
    EventType.FOLLOWUP_ESCALATED: followup.FollowupEscalated,
    EventType.AUDIT_LEGAL_HOLD_PLACED: legal_hold.AuditLegalHoldPlaced,
    EventType.AUDIT_LEGAL_HOLD_LIFTED: legal_hold.AuditLegalHoldLifted,
}

PAYLOAD_MODELS: dict[str, type[EventPayload]] = {
    event_type.value: model for event_type, model in _MODELS.items()
}
"""Event type → payload model. The single registry of known event types."""

_EVENT_TYPES: dict[type[EventPayload], str] = {
    model: event_type for event_type, model in PAYLOAD_MODELS.items()
}

SYSTEM_EVENT_TYPES: frozenset[str] = frozenset(
    event_type.value
    for event_type in (
        EventType.RULE_VIOLATION_REFUSED,
        EventType.CLIENT_PERSONAL_DATA_ACCESSED,
        EventType.CLIENT_DATA_READ,
        EventType.CLIENT_PERSONAL_DATA_SHREDDED,
        EventType.STAFF_PERSONAL_DATA_SHREDDED,
        EventType.STAFF_PERSONAL_DATA_ACCESSED,
        EventType.FOLLOWUP_TASK_CREATED,
        EventType.FOLLOWUP_COMPLETED,
        EventType.FOLLOWUP_REASSIGNED,
        EventType.FOLLOWUP_OVERDUE,
        EventType.FOLLOWUP_ESCALATED,
        EventType.AUDIT_LEGAL_HOLD_PLACED,
        EventType.AUDIT_LEGAL_HOLD_LIFTED,
    )
)
"""Types the services emit themselves; a branch system may not submit them to intake."""

SUBJECT_OF: Mapping[str, Subject] = MappingProxyType(
    {event_type: model.SUBJECT for event_type, model in PAYLOAD_MODELS.items()}
)
"""Event type → the envelope field naming its subject (client_id, product_id, staff_id)."""

GOVERNANCE_EVENT_TYPES: frozenset[str] = frozenset(
    event_type for event_type, subject in SUBJECT_OF.items() if subject is not Subject.CLIENT
)
"""Product-shelf and staff events (D-13, D-14, D-16): accepted from an admin only."""

SUPERVISOR_EVENT_TYPES: frozenset[str] = frozenset({EventType.CLIENT_LATE_ENTRY_APPROVED.value})
"""Types only a supervisor may send (D-05b: the approval of a late entry)."""

CATALOGUE_VERSION: Mapping[str, int] = MappingProxyType(
    {event_type: model.SCHEMA_VERSION for event_type, model in PAYLOAD_MODELS.items()}
)
"""Event type → the payload schema version written into ``RecordedEvent.schema_version``."""

PERSONAL_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {event_type: model.PERSONAL_PATHS for event_type, model in PAYLOAD_MODELS.items()}
)
"""Event type → payload keys whose values are personal data (D-04, ADR-0007).

A path is a top-level key of ``data``; the whole value under it is personal (for
``client.personal_data_recorded`` the ``fields`` object, whose keys, the names of the fields,
are not personal but whose values are). Besides the structured personal fields, the free texts
that describe the client's own situation (questions, complaint summaries, notes) are declared,
because staff write personal details into them; erasure must make them unreadable too.
An empty tuple: the type carries no personal data.
"""


class UnknownEventType(ValueError):
    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type


def payload_model(event_type: str) -> type[EventPayload]:
    try:
        return PAYLOAD_MODELS[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None


def event_type_of(payload: EventPayload) -> str:
    """The type string a payload model is registered under (the reverse of payload_model)."""
    try:
        return _EVENT_TYPES[type(payload)]
    except KeyError:
        raise UnknownEventType(type(payload).__name__) from None


def parse_payload(
    event_type: str, data: Mapping[str, Any], *, stored: bool = False
) -> EventPayload:
    """Validate ``data`` for ``event_type``; raises pydantic.ValidationError or UnknownEventType.

    ``stored``: ``data`` was read from Branchline's own store or topic, so its personal values
    are sealed and stand for the clear ones. Without it (submitted data) a sealed-looking value
    is refused like any text holding the reserved prefix."""
    return payload_model(event_type).model_validate(data, context={STORED: stored})
