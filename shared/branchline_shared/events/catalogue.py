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
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from branchline_shared.events.bounded import STORED, CleanText, CleanToken, Instant, Sealable
from branchline_shared.events.envelope import Actor, Channel, Identifier, Subject
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

# --- bounded scalar types ---------------------------------------------------------------------

Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    CleanText,
    Sealable,
]
"""A short required text: a reason, a counter, a missing item, a purpose."""
Note = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    CleanText,
    Sealable,
]
"""A note written by staff."""
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
    CleanText,
    Sealable,
]
"""A longer text: a question, an answer, a complaint summary, a resolution."""
PersonalValue = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    CleanText,
    Sealable,
]
TermKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
TermValue = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    CleanText,
    Sealable,
]
SourcePath = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.[a-z_]+/[a-z_]+$")]
"""Where a personal value sits: ``<event type>/<payload key>``."""
RuleId = Annotated[str, StringConstraints(pattern=r"^D-[0-9]{2}[a-z]?$")]
"""A rule of docs/rules.md: ``D-05``, ``D-01a``."""
Score = Annotated[int, Field(ge=0, le=100, strict=True)]
"""D-10: 0..100, an integer (``80.0`` and ``"80"`` are refused)."""
Amount = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=4)]
"""A positive amount in the institution's currency; JSON number or decimal string."""
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""ISO 4217 code, e.g. ``CNY``."""


class EventType(StrEnum):
    """Every type string of the catalogue (equal to the plain strings: ``"product.sold"``)."""

    CLIENT_REGISTERED = "client.registered"
    CLIENT_CONSENT_GRANTED = "client.consent_granted"
    CLIENT_CONSENT_WITHDRAWN = "client.consent_withdrawn"
    CLIENT_PERSONAL_DATA_RECORDED = "client.personal_data_recorded"
    CLIENT_IDENTITY_VERIFIED = "client.identity_verified"
    CLIENT_RISK_ASSESSED = "client.risk_assessed"
    CLIENT_ERASURE_REQUESTED = "client.erasure_requested"
    CLIENT_DATA_ACCESS_REQUESTED = "client.data_access_requested"
    CLIENT_PERSONAL_DATA_ACCESSED = "client.personal_data_accessed"
    CLIENT_DATA_READ = "client.data_read"
    CLIENT_SCREENED = "client.screened"
    CLIENT_BENEFICIAL_OWNER_RECORDED = "client.beneficial_owner_recorded"
    CLIENT_LATE_ENTRY_APPROVED = "client.late_entry_approved"
    CLIENT_PERSONAL_DATA_SHREDDED = "client.personal_data_shredded"
    CLIENT_ACCOUNT_CLOSED = "client.account_closed"
    CLIENT_ACCOUNT_REOPENED = "client.account_reopened"
    APPOINTMENT_BOOKED = "appointment.booked"
    APPOINTMENT_CONFIRMED = "appointment.confirmed"
    APPOINTMENT_CANCELLED = "appointment.cancelled"
    APPOINTMENT_ATTENDED = "appointment.attended"
    APPOINTMENT_NO_SHOW = "appointment.no_show"
    VISIT_ARRIVED = "visit.arrived"
    VISIT_NEEDS_CONFIRMED = "visit.needs_confirmed"
    VISIT_GUIDANCE_GIVEN = "visit.guidance_given"
    VISIT_DOCUMENTS_CHECKED = "visit.documents_checked"
    VISIT_BUSINESS_HANDLED = "visit.business_handled"
    VISIT_NEXT_STEPS_EXPLAINED = "visit.next_steps_explained"
    VISIT_CLOSED = "visit.closed"
    CONSULTATION_OPENED = "consultation.opened"
    CONSULTATION_ANSWERED = "consultation.answered"
    CONSULTATION_PROMISE_RENEGOTIATED = "consultation.promise_renegotiated"
    PRODUCT_RECOMMENDED = "product.recommended"
    PRODUCT_RISK_DISCLOSED = "product.risk_disclosed"
    PRODUCT_TERMS_CONFIRMED = "product.terms_confirmed"
    PRODUCT_SOLD = "product.sold"
    PRODUCT_APPROVED = "product.approved"
    PRODUCT_RERATED = "product.rerated"
    PRODUCT_SUSPENDED = "product.suspended"
    PRODUCT_WITHDRAWN = "product.withdrawn"
    STAFF_QUALIFIED = "staff.qualified"
    STAFF_QUALIFICATION_RENEWED = "staff.qualification_renewed"
    STAFF_QUALIFICATION_REVOKED = "staff.qualification_revoked"
    STAFF_TRAINING_RECORDED = "staff.training_recorded"
    STAFF_INTEREST_DECLARED = "staff.interest_declared"
    STAFF_GIFT_RECORDED = "staff.gift_recorded"
    COMPLAINT_RECEIVED = "complaint.received"
    COMPLAINT_ACKNOWLEDGED = "complaint.acknowledged"
    COMPLAINT_PROGRESS_REPORTED = "complaint.progress_reported"
    COMPLAINT_RESOLVED = "complaint.resolved"
    COMPLAINT_CONFIRMED_BY_CLIENT = "complaint.confirmed_by_client"
    COMPLAINT_CLOSED = "complaint.closed"
    COMPLAINT_PROMISE_RENEGOTIATED = "complaint.promise_renegotiated"
    COMPLAINT_CORRECTIVE_ACTION_PLANNED = "complaint.corrective_action_planned"
    COMPLAINT_CORRECTIVE_ACTION_COMPLETED = "complaint.corrective_action_completed"
    FEEDBACK_SURVEY_ANSWERED = "feedback.survey_answered"
    FEEDBACK_RECEIVED = "feedback.received"
    FEEDBACK_RESPONDED = "feedback.responded"
    AUDIT_LEGAL_HOLD_PLACED = "audit.legal_hold_placed"
    AUDIT_LEGAL_HOLD_LIFTED = "audit.legal_hold_lifted"
    RULE_VIOLATION_REFUSED = "rule.violation_refused"
    FOLLOWUP_TASK_CREATED = "followup.task_created"
    FOLLOWUP_COMPLETED = "followup.completed"
    FOLLOWUP_REASSIGNED = "followup.reassigned"
    FOLLOWUP_OVERDUE = "followup.overdue"
    FOLLOWUP_ESCALATED = "followup.escalated"


# --- bases ------------------------------------------------------------------------------------


class PayloadPart(BaseModel):
    """A nested object inside a payload: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EventPayload(BaseModel):
    """Base of every payload model: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    SCHEMA_VERSION: ClassVar[int] = 1
    """Version of this payload's schema; a breaking change adds a version and an upcaster."""
    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ()
    """Payload keys holding personal data (the whole value under each key; ``a.b`` the key
    ``b`` of the object under ``a``): sealed with the client's key before anything is stored,
    masked for readers, shredded with the key."""
    SYSTEM_TEXT_PATHS: ClassVar[tuple[str, ...]] = ()
    """Free text that Branchline writes itself, never taken from a caller (only on types of
    :data:`SYSTEM_EVENT_TYPES`). Every other free text is personal; everything else is a closed
    code, a bounded identifier, a number or a time (docs/input-validation.md)."""
    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ()
    """Free text of an event whose subject is a product or a member of staff, not a client:
    there is no client key to seal it with, so it stays in clear and must describe the
    institution's products and staff, never a client (docs/input-validation.md)."""
    SUBJECT: ClassVar[Subject] = Subject.CLIENT
    """Which envelope field names the event's subject (and so its stream)."""


class AppointmentEvent(EventPayload):
    """An event of one appointment (D-02)."""

    appointment_id: Identifier


class VisitEvent(EventPayload):
    """An event of one visit (D-01)."""

    visit_id: Identifier


class ConsultationEvent(EventPayload):
    """An event of one consultation (D-06)."""

    consultation_id: Identifier


class ProductEvent(EventPayload):
    """An event about one product offered to the client (D-05)."""

    product_id: Identifier


class ProductGovernanceEvent(EventPayload):
    """An event of the product shelf (D-13): the envelope's ``product_id`` names the product;
    sent by an admin (product governance), never by a branch system."""

    SUBJECT: ClassVar[Subject] = Subject.PRODUCT


class StaffEvent(EventPayload):
    """An event of one member of staff (D-14, D-16): the envelope's ``staff_id`` names them;
    sent by an admin, never by a branch system."""

    SUBJECT: ClassVar[Subject] = Subject.STAFF


class ComplaintEvent(EventPayload):
    """An event of one complaint (D-07)."""

    complaint_id: Identifier


class FollowupTaskEvent(EventPayload):
    """An event of one follow-up task (D-01b, D-02, D-06, D-07, D-08)."""

    task_id: Identifier


def _unique(values: tuple[Any, ...], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat a value")


# --- client -----------------------------------------------------------------------------------


class ClientRegistered(EventPayload):
    """client.registered (D-09: the client's type and owning RM)."""

    client_type: ClientType
    rm_id: Identifier


class ClientConsentGranted(EventPayload):
    """client.consent_granted (D-04): consent for the stated purposes, until ``expires_at``."""

    purposes: Annotated[tuple[ConsentPurpose, ...], Field(min_length=1)]
    expires_at: Instant | None = None

    @field_validator("purposes")
    @classmethod
    def _purposes_unique(cls, value: tuple[ConsentPurpose, ...]) -> tuple[ConsentPurpose, ...]:
        _unique(value, "purposes")
        return value


class ClientConsentWithdrawn(EventPayload):
    """client.consent_withdrawn (D-04): stops further processing for these purposes."""

    purposes: Annotated[tuple[ConsentPurpose, ...], Field(min_length=1)]

    @field_validator("purposes")
    @classmethod
    def _purposes_unique(cls, value: tuple[ConsentPurpose, ...]) -> tuple[ConsentPurpose, ...]:
        _unique(value, "purposes")
        return value


class ClientPersonalDataRecorded(EventPayload):
    """client.personal_data_recorded (D-04): needs a valid consent covering ``purpose``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("fields",)

    fields: Annotated[dict[PersonalField, PersonalValue], Field(min_length=1)]
    purpose: ConsentPurpose = ConsentPurpose.SERVICE


def _date_as_start_of_day(value: Any) -> Any:
    """An RFC 3339 full-date (``2030-05-01``) means the first instant of that day in UTC."""
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time.min, tzinfo=UTC)
    return value


DateOrTime = Annotated[Instant, BeforeValidator(_date_as_start_of_day)]
"""An aware time, or an RFC 3339 date read as the start of that day in UTC."""


class ClientIdentityVerified(EventPayload):
    """client.identity_verified (D-03). Only the configured methods open the gate (default
    ``networked_id_check``); the others are recorded. A verification stops counting when its
    document expires (``document_expires_at``: an RFC 3339 time, or a date meaning the start
    of that day in UTC)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("verification_ref",)

    method: IdentityMethod
    document_type: DocumentType
    verification_ref: Identifier | None = None
    """Reference of the check in the networked verification system, if any."""
    document_expires_at: DateOrTime | None = None


class ClientRiskAssessed(EventPayload):
    """client.risk_assessed (D-05). Without ``valid_until`` intake fills in the policy's
    default validity (12 months), so the stored event states its own validity."""

    level: RiskTolerance
    valid_until: Instant | None = None


class ClientScreened(EventPayload):
    """client.screened (D-03): an AML / sanctions screening result; a client whose latest
    result is ``hit`` or ``pending`` can neither open an account nor buy."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("lists",)

    result: ScreeningResult
    lists: Annotated[tuple[Label, ...], Field(max_length=50)] = ()
    """The lists screened against (e.g. a national sanctions list, UN, OFAC)."""
    screening_ref: Identifier | None = None


class ClientBeneficialOwnerRecorded(EventPayload):
    """client.beneficial_owner_recorded (D-03): a beneficial owner of a corporate (or
    institutional) client. ``owner_ref`` is the institution's reference of the owner;
    the owner's own personal values (``owner_fields``) are sealed like every personal value."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("owner_fields",)

    owner_ref: Identifier
    share_percent: Annotated[Decimal, Field(gt=0, le=100, max_digits=7, decimal_places=4)]
    owner_fields: Annotated[dict[PersonalField, PersonalValue], Field(min_length=1)] | None = None


class ClientLateEntryApproved(EventPayload):
    """client.late_entry_approved (D-05b): a supervisor approves the late entry (补录) of a
    sale, recommendation or contract, named by the ``event_id`` it will be recorded under."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    event_id: uuid.UUID
    reason: Label


class ClientErasureRequested(EventPayload):
    """client.erasure_requested (D-04): personal data restricted at once, destroyed when the
    retention period ends."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    reason: Label


class ClientDataAccessRequested(EventPayload):
    """client.data_access_requested (D-04): the client asks for a copy of their data."""

    channel: Channel


class ClientPersonalDataAccessed(EventPayload):
    """client.personal_data_accessed (D-04, D-11; system-emitted): personal data was shown in
    clear, to whom (the envelope's actor), which fields and why."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("purpose",)

    fields: tuple[PersonalField, ...] = ()
    """The structured personal fields shown (none: the client had none recorded)."""
    purpose: Label
    request_event_id: uuid.UUID | None = None
    """The ``client.data_access_requested`` this answered, if any."""
    texts: Annotated[tuple[SourcePath, ...], Field(max_length=200)] = ()
    """The personal free texts shown, as ``<event type>/<payload key>`` (which kinds of
    record, never their content)."""


class ShredBasis(StrEnum):
    """Why a client's personal data was destroyed when it was (D-04, D-11)."""

    RETENTION_ENDED = "retention_ended"
    """The retention period counted from the end of the relationship has run."""
    NO_RETENTION = "no_retention"
    """No retention applies to the client's records (e.g. no relationship ever began)."""


class ClientPersonalDataShredded(EventPayload):
    """client.personal_data_shredded (D-04, D-11; system-emitted): the client's data key was
    destroyed (crypto-shredding). Every sealed personal value of the client, in every store,
    topic, export and backup made afterwards, is unreadable from now on; hashes over the
    ciphertext keep the audit trail verifiable."""

    basis: ShredBasis
    erasure_event_id: uuid.UUID
    """The ``client.erasure_requested`` this carried out."""
    key_id: Identifier | None = None
    """The destroyed data key's id (none: the client never had personal data sealed)."""
    relationship_ended_at: Instant | None = None
    retention_until: Instant | None = None


class ClientDataRead(EventPayload):
    """client.data_read (D-11; system-emitted): a client's data was read outside the audit
    API; who read it is the envelope's ``submitted_by`` (and ``actor``), what the route, why
    the stated purpose."""

    SYSTEM_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("service", "route")
    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("purpose",)  # the reader's own words

    service: Label
    route: Label
    purpose: Label | None = None


class ClientAccountClosed(EventPayload):
    """client.account_closed (D-09, D-11): the relationship ends; the client's lifecycle moves
    to churned and the retention clock of the client's records starts at this event's
    ``occurred_at``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    reason: AccountClosureReason
    note: Note | None = None


class ClientAccountReopened(EventPayload):
    """client.account_reopened (D-09, D-11): a closed relationship starts again; the retention
    clock stops until the next closure."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    reason: AccountReopeningReason
    note: Note | None = None


# --- appointments (D-02) ------------------------------------------------------------------------


class AppointmentBooked(AppointmentEvent):
    """appointment.booked (D-02): the assigned staff prepares before ``slot_start``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("purpose",)

    slot_start: Instant
    slot_end: Instant | None = None
    purpose: Label
    staff_id: Identifier

    @model_validator(mode="after")
    def _slot_ordered(self) -> AppointmentBooked:
        if self.slot_end is not None and self.slot_end <= self.slot_start:
            raise ValueError("slot_end must be after slot_start")
        return self


class AppointmentConfirmed(AppointmentEvent):
    """appointment.confirmed (D-02)."""


class AppointmentCancelled(AppointmentEvent):
    """appointment.cancelled (D-02)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    reason: Label | None = None


class AppointmentAttended(AppointmentEvent):
    """appointment.attended (D-02)."""


class AppointmentNoShow(AppointmentEvent):
    """appointment.no_show (D-02)."""


# --- visits (D-01) -----------------------------------------------------------------------------


class VisitArrived(VisitEvent):
    """visit.arrived (D-01 step 1); the channel and branch are in the envelope."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("ticket",)

    ticket: Label | None = None
    appointment_id: Identifier | None = None


class VisitNeedsConfirmed(VisitEvent):
    """visit.needs_confirmed (D-01 step 2)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    category: VisitCategory
    note: Note | None = None


class VisitGuidanceGiven(VisitEvent):
    """visit.guidance_given (D-01 step 3): process and required materials explained."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("materials", "note")

    materials: tuple[Label, ...] = ()
    note: Note | None = None


class VisitDocumentsChecked(VisitEvent):
    """visit.documents_checked (D-01 step 4): incomplete lists what is missing (the client must
    be told what to bring); complete lists nothing."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("missing",)

    complete: StrictBool
    missing: Annotated[tuple[Label, ...], Field(max_length=50)] = ()

    @model_validator(mode="after")
    def _missing_matches_complete(self) -> VisitDocumentsChecked:
        if self.complete and self.missing:
            raise ValueError("missing must be empty when complete is true")
        if not self.complete and not self.missing:
            raise ValueError("missing must list the missing items when complete is false")
        return self


class VisitBusinessHandled(VisitEvent):
    """visit.business_handled (D-01 step 5): waiting and handling time are measured (D-12)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("counter",)

    counter: Label
    started_at: Instant
    ended_at: Instant

    @model_validator(mode="after")
    def _ended_after_start(self) -> VisitBusinessHandled:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at must not be before started_at")
        return self


class VisitNextStepsExplained(VisitEvent):
    """visit.next_steps_explained (D-01 step 6)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    note: Note | None = None


class VisitClosed(VisitEvent):
    """visit.closed (D-01 step 7): an early end states its reason. A satisfaction survey is
    due afterwards (D-01b)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    outcome: VisitOutcome
    reason: Label | None = None

    @model_validator(mode="after")
    def _early_end_has_reason(self) -> VisitClosed:
        if self.outcome is not VisitOutcome.NORMAL and self.reason is None:
            raise ValueError(f"reason is required when outcome is {self.outcome.value}")
        return self


# --- consultations (D-06) ----------------------------------------------------------------------


class ConsultationOpened(ConsultationEvent):
    """consultation.opened (D-06): online ones are answered within 30 seconds."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("question",)

    channel: Channel
    question: Text


class ConsultationAnswered(ConsultationEvent):
    """consultation.answered (D-06): an answer, or a promised deadline (and follow-up channel)
    for a question that cannot be answered at once; a promise is followed by an answer."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("answer",)

    answer: Text | None = None
    promised_by: Instant | None = None
    follow_up_channel: Channel | None = None

    @model_validator(mode="after")
    def _answer_or_promise(self) -> ConsultationAnswered:
        if self.answer is None and self.promised_by is None:
            raise ValueError("either answer or promised_by is required")
        return self


def _client_told(client_told: bool) -> None:
    if not client_told:
        raise ValueError("client_told must be true: a promise is renegotiated with the client")


class ConsultationPromiseRenegotiated(ConsultationEvent):
    """consultation.promise_renegotiated (D-17): the promised answer cannot be given by its
    deadline; before the deadline passes the client is told, with a reason and an alternative,
    and a new deadline ``promised_by`` is agreed."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("alternative",)

    promised_by: Instant
    reason: RenegotiationReason
    alternative: Note
    client_told: StrictBool
    told_via: Channel | None = None

    @model_validator(mode="after")
    def _told(self) -> ConsultationPromiseRenegotiated:
        _client_told(self.client_told)
        return self


# --- products (D-05) ---------------------------------------------------------------------------


class ProductRecommended(ProductEvent):
    """product.recommended (D-05, D-13, D-14, D-16): refused for a product not on sale, by
    staff not qualified for its category or with an interest not disclosed to the client,
    without a valid assessment or above tolerance. The risk is the shelf's rating in force;
    a stated ``product_risk`` must agree with it."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("product_name",)

    product_risk: ProductRisk | None = None
    product_name: Label | None = None
    interest_disclosed: StrictBool | None = None
    """D-16: the recommending staff told the client of their declared interest in the
    product (required true when they declared one)."""


class ProductRiskDisclosed(ProductEvent):
    """product.risk_disclosed (D-05), schema version 2: an itemised disclosure. ``items``
    names what was disclosed (risks, returns, fees, holding_period: all four are required
    for a sale), ``holding_period`` the suitable holding period told to the client, and
    ``acknowledged`` the client's acknowledgement of each item."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("holding_period",)

    SCHEMA_VERSION: ClassVar[int] = 2

    acknowledged: StrictBool
    items: Annotated[tuple[DisclosureItem, ...], Field(max_length=len(DisclosureItem))]
    holding_period: Label | None = None
    product_risk: ProductRisk | None = None
    """The risk level stated in the disclosure, if it was stated."""

    @field_validator("items")
    @classmethod
    def _items_unique(cls, value: tuple[DisclosureItem, ...]) -> tuple[DisclosureItem, ...]:
        _unique(value, "items")
        return value


class ProductTerms(PayloadPart):
    """D-05: the terms as shown to the client (strings, as shown). A sale needs ``period``,
    ``fees`` and ``rate`` or ``expected_return`` (and ``repayment`` for a loan); anything
    else shown goes under ``other``."""

    rate: TermValue | None = None
    expected_return: TermValue | None = None
    period: TermValue | None = None
    fees: TermValue | None = None
    repayment: TermValue | None = None
    other: Annotated[dict[TermKey, TermValue], Field(max_length=50)] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _named_terms_only(cls, value: Any) -> Any:
        # Refused without naming the key: the caller's text may be personal (D-04).
        if isinstance(value, dict) and set(value) - set(cls.model_fields):
            raise PydanticCustomError(
                "extra_forbidden",
                "unknown term: name it rate, expected_return, period, fees or repayment, "
                "or put it under other",
            )
        return value


class ProductTermsConfirmed(ProductEvent):
    """product.terms_confirmed (D-05), schema version 2: the named terms the client
    confirmed before signing (签署合同前再次确认)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = (
        "terms.rate",
        "terms.expected_return",
        "terms.period",
        "terms.fees",
        "terms.repayment",
        "terms.other",
    )  # the values as shown to the client (free text); which terms were shown stays readable

    terms: ProductTerms


class ProductSold(ProductEvent):
    """product.sold (D-03, D-05). The ``relied_on_*`` fields are the as-of proof: intake fills
    them with the ids of the events the sale relied on (any value a caller sends is replaced),
    so an auditor can show what the firm knew at the moment of sale. ``product_risk`` is filled
    from the product's recommendation or disclosure when the caller does not state it."""

    amount: Amount
    currency: CurrencyCode | None = None
    product_risk: ProductRisk | None = None
    contract_id: Identifier | None = None
    relied_on_identity_event_id: uuid.UUID | None = None
    relied_on_assessment_event_id: uuid.UUID | None = None
    relied_on_disclosure_event_id: uuid.UUID | None = None
    relied_on_terms_event_id: uuid.UUID | None = None
    relied_on_rating_event_id: uuid.UUID | None = None
    """D-13: the shelf event whose rating was in force at the sale."""
    relied_on_qualification_event_id: uuid.UUID | None = None
    """D-14: the qualification of the selling staff in force at the sale."""
    relied_on_screening_event_id: uuid.UUID | None = None
    """D-03: the clear screening result in force at the sale."""
    relied_on_late_entry_approval_event_id: uuid.UUID | None = None
    """D-05b: the supervisor's approval of a late entry."""
    received_at: Instant | None = None
    """D-05b: when intake received the sale (its ``occurred_at`` is when it happened)."""


# --- the product shelf (D-13) -------------------------------------------------------------------


class ProductRiskFactors(PayloadPart):
    """D-13: the factors behind a product's rating."""

    market: ProductRisk | None = None
    credit: ProductRisk | None = None
    liquidity: ProductRisk | None = None


class ProductApproved(ProductGovernanceEvent):
    """product.approved (D-13): the institution puts a product on its shelf, on sale, with its
    own risk rating in force from ``occurred_at``."""

    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("name",)

    name: Label
    category: ProductCategory
    risk: ProductRisk
    risk_factors: ProductRiskFactors | None = None
    eligible_client_types: Annotated[tuple[ClientType, ...], Field(min_length=1)]

    @field_validator("eligible_client_types")
    @classmethod
    def _types_unique(cls, value: tuple[ClientType, ...]) -> tuple[ClientType, ...]:
        _unique(value, "eligible_client_types")
        return value


class ProductRerated(ProductGovernanceEvent):
    """product.rerated (D-13, D-15): a new rating in force from ``effective_at``."""

    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    risk: ProductRisk
    effective_at: Instant
    reason: Label
    risk_factors: ProductRiskFactors | None = None


class ProductSuspended(ProductGovernanceEvent):
    """product.suspended (D-13): no recommendation or sale until resumed by a new approval."""

    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    reason: Label


class ProductWithdrawn(ProductGovernanceEvent):
    """product.withdrawn (D-13): off the shelf for good."""

    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    reason: Label


# --- staff (D-14, D-16) -------------------------------------------------------------------------


class StaffQualified(StaffEvent):
    """staff.qualified (D-14): a qualification for one product category, valid from
    ``occurred_at`` (or ``valid_from``) until ``valid_until``."""

    category: ProductCategory
    certificate_id: Identifier
    valid_until: Instant
    valid_from: Instant | None = None


class StaffQualificationRenewed(StaffEvent):
    """staff.qualification_renewed (D-14): the qualification of ``category`` extended."""

    category: ProductCategory
    valid_until: Instant
    certificate_id: Identifier | None = None


class StaffQualificationRevoked(StaffEvent):
    """staff.qualification_revoked (D-14): no longer valid from ``occurred_at``."""

    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    category: ProductCategory
    reason: Label


class StaffTrainingRecorded(StaffEvent):
    """staff.training_recorded (D-14): training hours (reference: 40 a year)."""

    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("topic",)

    hours: Annotated[Decimal, Field(gt=0, le=1000, max_digits=7, decimal_places=2)]
    topic: Label
    completed_at: Instant


class StaffInterestDeclared(StaffEvent):
    """staff.interest_declared (D-16): a material interest in a product; recommending it then
    needs the interest disclosed to the client."""

    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("nature",)

    product_id: Identifier
    nature: Label


class StaffGiftRecorded(StaffEvent):
    """staff.gift_recorded (D-16): a gift or benefit offered by a client. Accepting one above
    the policy's value (default 0) breaks the policy: it is recorded and escalated."""

    INSTITUTION_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("description",)

    client_id: Identifier
    value: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=4)]
    accepted: StrictBool
    description: Label


# --- complaints (D-07) -------------------------------------------------------------------------


class ComplaintReceived(ComplaintEvent):
    """complaint.received (D-07): details recorded. ``topic`` classifies the complaint; the
    followup service escalates the topic ``personal_data`` (personal-data protection) to the
    RM's supervisor. ``complex`` selects the longer decision clock of profiles that have one."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("summary",)

    severity: ComplaintSeverity
    summary: Text
    topic: Identifier | None = None
    complex: StrictBool = False
    visit_id: Identifier | None = None
    problem: ComplaintProblem | None = None
    """D-17: what the complaint is about (regulatory statistics by problem code)."""
    product_id: Identifier | None = None
    product_category: ProductCategory | None = None
    """D-17: the product complained about (regulatory statistics by product code)."""


class ComplaintAcknowledged(ComplaintEvent):
    """complaint.acknowledged (D-07): apology made, owner assigned."""

    owner_id: Identifier
    due_at: Instant | None = None


class ComplaintProgressReported(ComplaintEvent):
    """complaint.progress_reported (D-07 "investigating"): progress communicated; ``complex``
    true when the investigation found the case complex (a longer decision clock may apply)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    note: Note
    complex: StrictBool = False
    next_update_by: Instant | None = None
    """D-17: the client was promised the next update by then (a promise tracked to kept)."""


class Compensation(PayloadPart):
    """D-07: optional compensation of a resolution."""

    kind: CompensationKind
    value: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=4)]
    description: Label | None = None


class ComplaintResolved(ComplaintEvent):
    """complaint.resolved (D-07)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("resolution", "compensation.description")

    resolution: Text
    compensation: Compensation | None = None
    root_cause: RootCause | None = None
    """D-17: the root cause found (complaint analysis by root cause)."""


class ComplaintConfirmedByClient(ComplaintEvent):
    """complaint.confirmed_by_client (D-07): the client's answer to the resolution."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    satisfied: StrictBool
    note: Note | None = None


class ComplaintClosed(ComplaintEvent):
    """complaint.closed (D-07): only after a resolution and the client's confirmation."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    note: Note | None = None


class ComplaintPromiseRenegotiated(ComplaintEvent):
    """complaint.promise_renegotiated (D-17): the promised progress update cannot be given by
    its deadline; before it passes the client is told, with a reason and an alternative, and a
    new deadline ``promised_by`` is agreed."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("alternative",)

    promised_by: Instant
    reason: RenegotiationReason
    alternative: Note
    client_told: StrictBool
    told_via: Channel | None = None

    @model_validator(mode="after")
    def _told(self) -> ComplaintPromiseRenegotiated:
        _client_told(self.client_told)
        return self


class ComplaintCorrectiveActionPlanned(ComplaintEvent):
    """complaint.corrective_action_planned (D-17): a corrective action against the complaint's
    root cause, with an owner and a deadline; tracked to done as a task of the owner."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("description",)

    action_id: Identifier
    root_cause: RootCause
    action_kind: CorrectiveActionKind
    owner_id: Identifier
    due_at: Instant
    description: Note | None = None


class ComplaintCorrectiveActionCompleted(ComplaintEvent):
    """complaint.corrective_action_completed (D-17): the corrective action is done."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    action_id: Identifier
    note: Note | None = None


# --- satisfaction (D-10) -----------------------------------------------------------------------


class SatisfactionScores(PayloadPart):
    """D-10: the five dimensions, each 0..100."""

    attitude: Score
    professionalism: Score
    response_speed: Score
    risk_management: Score
    convenience: Score


class FeedbackSurveyAnswered(EventPayload):
    """feedback.survey_answered (D-01b, D-10)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("comment",)

    visit_id: Identifier | None = None
    scores: SatisfactionScores
    channel: SurveyChannel | None = None
    comment: Text | None = None


class FeedbackReceived(EventPayload):
    """feedback.received (D-07): feedback other than a survey or a complaint; it is responded
    to within 24 hours."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("comment",)

    kind: FeedbackKind
    comment: Text
    channel: SurveyChannel | None = None


class FeedbackResponded(EventPayload):
    """feedback.responded (D-07, D-17): the institution answered a piece of feedback
    (``responds_to_event_id``: the ``feedback.survey_answered`` or ``feedback.received``);
    optionally classified by root cause."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    responds_to_event_id: uuid.UUID
    channel: Channel
    root_cause: RootCause | None = None
    note: Note | None = None


# --- emitted by the system ---------------------------------------------------------------------


class RefusedEvent(PayloadPart):
    """The refused submission, as sent; its personal paths are redacted (D-04: data refused
    for want of consent must not be stored)."""

    event_id: uuid.UUID | None = None
    type: Annotated[str, StringConstraints(min_length=3, max_length=64), CleanToken]
    occurred_at: Instant
    client_id: Identifier | None = None
    product_id: Identifier | None = None
    staff_id: Identifier | None = None
    branch_id: Identifier | None = None
    channel: Channel | None = None
    actor: Actor
    data: dict[str, Any]


class RuleViolationRefused(EventPayload):
    """rule.violation_refused (ADR-0005): a rule refused a submission; the
    refusal itself is recorded (e.g. a recommendation above tolerance, D-05)."""

    SYSTEM_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("title", "detail", "field")

    rule: RuleId
    title: Label
    detail: Text
    field: Annotated[str, StringConstraints(max_length=200), CleanText] | None = None
    refused_event: RefusedEvent
    submitted_by: Actor


class FollowupTaskCreated(FollowupTaskEvent):
    """followup.task_created: a task with its deadline, as computed by the profile in force
    (stored, so changing a profile never rewrites history, D-07)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    kind: FollowupKind
    assignee: Identifier
    due_at: Instant
    rule: RuleId
    source_event_id: uuid.UUID | None = None
    subject_id: Identifier | None = None
    """The visit, appointment, consultation, complaint or product the task is about."""
    profile: Identifier | None = None
    escalate_at: Instant | None = None
    note: Note | None = None
    holdings: Annotated[tuple[Identifier, ...], Field(max_length=200)] = ()
    """D-15: the products held that no longer fit (a suitability review)."""


class FollowupCompleted(FollowupTaskEvent):
    """followup.completed: the outcome (a closed code; the RM's own words go into the sealed
    ``note``), and for a revisit the next date (D-08); for a survey task the scores (D-10).
    ``kind``: the completed task's kind. v2: ``outcome`` became a code (v1 free text is read
    as ``other``)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    outcome: FollowupOutcome
    kind: FollowupKind | None = None
    note: Note | None = None
    next_contact_at: Instant | None = None
    scores: SatisfactionScores | None = None
    client_warned: StrictBool | None = None
    """D-15: the client was warned (风险提示) that a holding no longer fits."""


class FollowupReassigned(FollowupTaskEvent):
    """followup.reassigned (by a supervisor)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    from_assignee: Identifier
    to_assignee: Identifier
    reason: Label | None = None


class FollowupOverdue(FollowupTaskEvent):
    """followup.overdue: the deadline passed without completion."""

    due_at: Instant


class FollowupEscalated(FollowupTaskEvent):
    """followup.escalated: an overdue task escalated to the RM's supervisor (D-08)."""

    SYSTEM_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    supervisor_id: Identifier
    reason: Label | None = None


class AuditLegalHoldPlaced(EventPayload):
    """audit.legal_hold_placed (D-11; recorded by the audit service for an auditor or admin,
    who is the envelope's actor): none of the client's records is pruned while the hold
    stands."""

    hold_id: Identifier
    reason: LegalHoldReason
    case_reference: Identifier | None = None


class AuditLegalHoldLifted(EventPayload):
    """audit.legal_hold_lifted (D-11): the hold ``hold_id`` no longer stands."""

    hold_id: Identifier
    reason: LegalHoldReleaseReason


# --- the registry ------------------------------------------------------------------------------

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
