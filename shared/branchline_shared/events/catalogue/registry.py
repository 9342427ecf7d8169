"""The registry: event type → payload model, and what follows from it (the system, governance
and supervisor types, subjects, schema versions, personal paths); parsing a payload by type."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from branchline_shared.events.bounded import STORED
from branchline_shared.events.catalogue.appointment import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentConfirmed,
    AppointmentNoShow,
)
from branchline_shared.events.catalogue.base import (
    EventPayload,
)
from branchline_shared.events.catalogue.client import (
    ClientAccountClosed,
    ClientAccountReopened,
    ClientBeneficialOwnerRecorded,
    ClientIdentityVerified,
    ClientLateEntryApproved,
    ClientRegistered,
    ClientRiskAssessed,
    ClientScreened,
)
from branchline_shared.events.catalogue.complaint import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintConfirmedByClient,
    ComplaintCorrectiveActionCompleted,
    ComplaintCorrectiveActionPlanned,
    ComplaintProgressReported,
    ComplaintPromiseRenegotiated,
    ComplaintReceived,
    ComplaintResolved,
)
from branchline_shared.events.catalogue.consultation import (
    ConsultationAnswered,
    ConsultationOpened,
    ConsultationPromiseRenegotiated,
)
from branchline_shared.events.catalogue.event_types import (
    EventType,
)
from branchline_shared.events.catalogue.feedback import (
    FeedbackReceived,
    FeedbackResponded,
    FeedbackSurveyAnswered,
)
from branchline_shared.events.catalogue.followup import (
    FollowupCompleted,
    FollowupEscalated,
    FollowupOverdue,
    FollowupReassigned,
    FollowupTaskCreated,
)
from branchline_shared.events.catalogue.legal_hold import (
    AuditLegalHoldLifted,
    AuditLegalHoldPlaced,
)
from branchline_shared.events.catalogue.privacy import (
    ClientConsentGranted,
    ClientConsentWithdrawn,
    ClientDataAccessRequested,
    ClientDataRead,
    ClientErasureRequested,
    ClientPersonalDataAccessed,
    ClientPersonalDataRecorded,
    ClientPersonalDataShredded,
)
from branchline_shared.events.catalogue.product import (
    ProductRecommended,
    ProductRiskDisclosed,
    ProductSold,
    ProductTermsConfirmed,
)
from branchline_shared.events.catalogue.refusal import (
    RuleViolationRefused,
)
from branchline_shared.events.catalogue.shelf import (
    ProductApproved,
    ProductRerated,
    ProductSuspended,
    ProductWithdrawn,
)
from branchline_shared.events.catalogue.staff import (
    StaffGiftRecorded,
    StaffInterestDeclared,
    StaffQualificationRenewed,
    StaffQualificationRevoked,
    StaffQualified,
    StaffTrainingRecorded,
)
from branchline_shared.events.catalogue.visit import (
    VisitArrived,
    VisitBusinessHandled,
    VisitClosed,
    VisitDocumentsChecked,
    VisitGuidanceGiven,
    VisitNeedsConfirmed,
    VisitNextStepsExplained,
)
from branchline_shared.events.envelope import Subject

_MODELS: dict[EventType, type[EventPayload]] = {
    EventType.CLIENT_REGISTERED: ClientRegistered,
    EventType.CLIENT_CONSENT_GRANTED: ClientConsentGranted,
    EventType.CLIENT_CONSENT_WITHDRAWN: ClientConsentWithdrawn,
    EventType.CLIENT_PERSONAL_DATA_RECORDED: ClientPersonalDataRecorded,
    EventType.CLIENT_IDENTITY_VERIFIED: ClientIdentityVerified,
    EventType.CLIENT_RISK_ASSESSED: ClientRiskAssessed,
    EventType.CLIENT_ERASURE_REQUESTED: ClientErasureRequested,
    EventType.CLIENT_DATA_ACCESS_REQUESTED: ClientDataAccessRequested,
    EventType.CLIENT_PERSONAL_DATA_ACCESSED: ClientPersonalDataAccessed,
    EventType.CLIENT_DATA_READ: ClientDataRead,
    EventType.CLIENT_PERSONAL_DATA_SHREDDED: ClientPersonalDataShredded,
    EventType.CLIENT_ACCOUNT_CLOSED: ClientAccountClosed,
    EventType.CLIENT_ACCOUNT_REOPENED: ClientAccountReopened,
    EventType.APPOINTMENT_BOOKED: AppointmentBooked,
    EventType.APPOINTMENT_CONFIRMED: AppointmentConfirmed,
    EventType.APPOINTMENT_CANCELLED: AppointmentCancelled,
    EventType.APPOINTMENT_ATTENDED: AppointmentAttended,
    EventType.APPOINTMENT_NO_SHOW: AppointmentNoShow,
    EventType.VISIT_ARRIVED: VisitArrived,
    EventType.VISIT_NEEDS_CONFIRMED: VisitNeedsConfirmed,
    EventType.VISIT_GUIDANCE_GIVEN: VisitGuidanceGiven,
    EventType.VISIT_DOCUMENTS_CHECKED: VisitDocumentsChecked,
    EventType.VISIT_BUSINESS_HANDLED: VisitBusinessHandled,
    EventType.VISIT_NEXT_STEPS_EXPLAINED: VisitNextStepsExplained,
    EventType.VISIT_CLOSED: VisitClosed,
    EventType.CONSULTATION_OPENED: ConsultationOpened,
    EventType.CONSULTATION_ANSWERED: ConsultationAnswered,
    EventType.CONSULTATION_PROMISE_RENEGOTIATED: ConsultationPromiseRenegotiated,
    EventType.PRODUCT_RECOMMENDED: ProductRecommended,
    EventType.PRODUCT_RISK_DISCLOSED: ProductRiskDisclosed,
    EventType.PRODUCT_TERMS_CONFIRMED: ProductTermsConfirmed,
    EventType.PRODUCT_SOLD: ProductSold,
    EventType.CLIENT_SCREENED: ClientScreened,
    EventType.CLIENT_BENEFICIAL_OWNER_RECORDED: ClientBeneficialOwnerRecorded,
    EventType.CLIENT_LATE_ENTRY_APPROVED: ClientLateEntryApproved,
    EventType.PRODUCT_APPROVED: ProductApproved,
    EventType.PRODUCT_RERATED: ProductRerated,
    EventType.PRODUCT_SUSPENDED: ProductSuspended,
    EventType.PRODUCT_WITHDRAWN: ProductWithdrawn,
    EventType.STAFF_QUALIFIED: StaffQualified,
    EventType.STAFF_QUALIFICATION_RENEWED: StaffQualificationRenewed,
    EventType.STAFF_QUALIFICATION_REVOKED: StaffQualificationRevoked,
    EventType.STAFF_TRAINING_RECORDED: StaffTrainingRecorded,
    EventType.STAFF_INTEREST_DECLARED: StaffInterestDeclared,
    EventType.STAFF_GIFT_RECORDED: StaffGiftRecorded,
    EventType.COMPLAINT_RECEIVED: ComplaintReceived,
    EventType.COMPLAINT_ACKNOWLEDGED: ComplaintAcknowledged,
    EventType.COMPLAINT_PROGRESS_REPORTED: ComplaintProgressReported,
    EventType.COMPLAINT_RESOLVED: ComplaintResolved,
    EventType.COMPLAINT_CONFIRMED_BY_CLIENT: ComplaintConfirmedByClient,
    EventType.COMPLAINT_CLOSED: ComplaintClosed,
    EventType.COMPLAINT_PROMISE_RENEGOTIATED: ComplaintPromiseRenegotiated,
    EventType.COMPLAINT_CORRECTIVE_ACTION_PLANNED: ComplaintCorrectiveActionPlanned,
    EventType.COMPLAINT_CORRECTIVE_ACTION_COMPLETED: ComplaintCorrectiveActionCompleted,
    EventType.FEEDBACK_SURVEY_ANSWERED: FeedbackSurveyAnswered,
    EventType.FEEDBACK_RECEIVED: FeedbackReceived,
    EventType.FEEDBACK_RESPONDED: FeedbackResponded,
    EventType.RULE_VIOLATION_REFUSED: RuleViolationRefused,
    EventType.FOLLOWUP_TASK_CREATED: FollowupTaskCreated,
    EventType.FOLLOWUP_COMPLETED: FollowupCompleted,
    EventType.FOLLOWUP_REASSIGNED: FollowupReassigned,
    EventType.FOLLOWUP_OVERDUE: FollowupOverdue,
    EventType.FOLLOWUP_ESCALATED: FollowupEscalated,
    EventType.AUDIT_LEGAL_HOLD_PLACED: AuditLegalHoldPlaced,
    EventType.AUDIT_LEGAL_HOLD_LIFTED: AuditLegalHoldLifted,
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
