"""The catalogue of event types (docs/api.md "Catalogue"): one frozen payload model per type.

Intake validates ``data`` of a submitted event with the model registered for its ``type``;
consumers parse the payload of a recorded event with the same model, so every service reads
events through the same code.

Conventions of every payload model:

* frozen, unknown fields refused (:class:`EventPayload`);
* ids are :data:`~branchline_shared.events.envelope.Identifier` (≤ 128 printable characters);
  free text is bounded (:data:`Label` 200, :data:`Note` 2,000, :data:`Text` 4,000 characters);
* every time is an :data:`~branchline_shared.events.bounded.Instant` (an RFC 3339 string with
  an offset, inside the window the stores represent exactly);
* booleans and scores are strict (``"yes"`` or ``1`` is not ``true``; ``"80"`` is not ``80``);
* value sets are closed ``StrEnum`` s (:mod:`.vocabulary`);
* ``PERSONAL_PATHS`` names the payload keys that hold personal data (:data:`PERSONAL_FIELDS`,
  the encryption and erasure seam of D-04 / ADR-0007;
* ``SCHEMA_VERSION`` is the payload's schema version (:data:`CATALOGUE_VERSION`).

The models live in one module per family of events (client, privacy, appointment, visit,
consultation, product, shelf, staff, complaint, feedback, refusal, followup, legal_hold); the
validator shapes they share are in :mod:`.checks`, the type strings in :mod:`.event_types`,
the registry in :mod:`.registry`. Import from this package: every public name is here.
"""

from __future__ import annotations

from branchline_shared.events.catalogue.appointment import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentConfirmed,
    AppointmentNoShow,
)
from branchline_shared.events.catalogue.base import (
    AppointmentEvent,
    ComplaintEvent,
    ConsultationEvent,
    EventPayload,
    FollowupTaskEvent,
    PayloadPart,
    ProductEvent,
    ProductGovernanceEvent,
    StaffEvent,
    VisitEvent,
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
    Compensation,
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
    SatisfactionScores,
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
    ShredBasis,
)
from branchline_shared.events.catalogue.product import (
    ProductRecommended,
    ProductRiskDisclosed,
    ProductSold,
    ProductTerms,
    ProductTermsConfirmed,
)
from branchline_shared.events.catalogue.refusal import (
    RefusedEvent,
    RuleViolationRefused,
)
from branchline_shared.events.catalogue.registry import (
    CATALOGUE_VERSION,
    GOVERNANCE_EVENT_TYPES,
    PAYLOAD_MODELS,
    PERSONAL_FIELDS,
    SUBJECT_OF,
    SUPERVISOR_EVENT_TYPES,
    SYSTEM_EVENT_TYPES,
    UnknownEventType,
    event_type_of,
    parse_payload,
    payload_model,
)
from branchline_shared.events.catalogue.scalars import (
    Label,
    Note,
    RuleId,
    Text,
)
from branchline_shared.events.catalogue.shelf import (
    ProductApproved,
    ProductRerated,
    ProductRiskFactors,
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
from branchline_shared.events.vocabulary import (
    AccountClosureReason,
    AccountReopeningReason,
    ClientType,
    CompensationKind,
    ComplaintProblem,
    ComplaintSeverity,
    ConsentPurpose,
    CorrectiveActionKind,
    DisclosureItem,
    DocumentType,
    FeedbackKind,
    FollowupKind,
    FollowupOutcome,
    IdentityMethod,
    LegalHoldReason,
    LegalHoldReleaseReason,
    LifecycleStage,
    PersonalField,
    ProductCategory,
    ProductRisk,
    ProductStatus,
    RenegotiationReason,
    RiskLevel,
    RiskTolerance,
    RootCause,
    SatisfactionDimension,
    ScreeningResult,
    SurveyChannel,
    VisitCategory,
    VisitOutcome,
)

__all__ = [
    "CATALOGUE_VERSION",
    "GOVERNANCE_EVENT_TYPES",
    "PAYLOAD_MODELS",
    "PERSONAL_FIELDS",
    "SUBJECT_OF",
    "SUPERVISOR_EVENT_TYPES",
    "SYSTEM_EVENT_TYPES",
    "AccountClosureReason",
    "AccountReopeningReason",
    "AppointmentAttended",
    "AppointmentBooked",
    "AppointmentCancelled",
    "AppointmentConfirmed",
    "AppointmentEvent",
    "AppointmentNoShow",
    "AuditLegalHoldLifted",
    "AuditLegalHoldPlaced",
    "ClientAccountClosed",
    "ClientAccountReopened",
    "ClientBeneficialOwnerRecorded",
    "ClientConsentGranted",
    "ClientConsentWithdrawn",
    "ClientDataAccessRequested",
    "ClientDataRead",
    "ClientErasureRequested",
    "ClientIdentityVerified",
    "ClientLateEntryApproved",
    "ClientPersonalDataAccessed",
    "ClientPersonalDataRecorded",
    "ClientPersonalDataShredded",
    "ClientRegistered",
    "ClientRiskAssessed",
    "ClientScreened",
    "ClientType",
    "Compensation",
    "CompensationKind",
    "ComplaintAcknowledged",
    "ComplaintClosed",
    "ComplaintConfirmedByClient",
    "ComplaintCorrectiveActionCompleted",
    "ComplaintCorrectiveActionPlanned",
    "ComplaintEvent",
    "ComplaintProblem",
    "ComplaintProgressReported",
    "ComplaintPromiseRenegotiated",
    "ComplaintReceived",
    "ComplaintResolved",
    "ComplaintSeverity",
    "ConsentPurpose",
    "ConsultationAnswered",
    "ConsultationEvent",
    "ConsultationOpened",
    "ConsultationPromiseRenegotiated",
    "CorrectiveActionKind",
    "DisclosureItem",
    "DocumentType",
    "EventPayload",
    "EventType",
    "FeedbackKind",
    "FeedbackReceived",
    "FeedbackResponded",
    "FeedbackSurveyAnswered",
    "FollowupCompleted",
    "FollowupEscalated",
    "FollowupKind",
    "FollowupOutcome",
    "FollowupOverdue",
    "FollowupReassigned",
    "FollowupTaskCreated",
    "FollowupTaskEvent",
    "IdentityMethod",
    "Label",
    "LegalHoldReason",
    "LegalHoldReleaseReason",
    "LifecycleStage",
    "Note",
    "PayloadPart",
    "PersonalField",
    "ProductApproved",
    "ProductCategory",
    "ProductEvent",
    "ProductGovernanceEvent",
    "ProductRecommended",
    "ProductRerated",
    "ProductRisk",
    "ProductRiskDisclosed",
    "ProductRiskFactors",
    "ProductSold",
    "ProductStatus",
    "ProductSuspended",
    "ProductTerms",
    "ProductTermsConfirmed",
    "ProductWithdrawn",
    "RefusedEvent",
    "RenegotiationReason",
    "RiskLevel",
    "RiskTolerance",
    "RootCause",
    "RuleId",
    "RuleViolationRefused",
    "SatisfactionDimension",
    "SatisfactionScores",
    "ScreeningResult",
    "ShredBasis",
    "StaffEvent",
    "StaffGiftRecorded",
    "StaffInterestDeclared",
    "StaffQualificationRenewed",
    "StaffQualificationRevoked",
    "StaffQualified",
    "StaffTrainingRecorded",
    "Subject",
    "SurveyChannel",
    "Text",
    "UnknownEventType",
    "VisitArrived",
    "VisitBusinessHandled",
    "VisitCategory",
    "VisitClosed",
    "VisitDocumentsChecked",
    "VisitEvent",
    "VisitGuidanceGiven",
    "VisitNeedsConfirmed",
    "VisitNextStepsExplained",
    "VisitOutcome",
    "event_type_of",
    "parse_payload",
    "payload_model",
]
