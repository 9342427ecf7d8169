"""The client sub-aggregate: register (D-09), identity (D-03), consent (D-04), risk assessment
(D-05) and erasure (D-04).

Times are event times (``occurred_at``): a rule asks "was the client verified / consenting /
assessed *when the event happened*", so an event that arrives late is judged by its own time.
Withdrawal and erasure are the exception: once recorded they stop all further processing,
whatever the time of the event that follows (D-04).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from branchline_intake.domain.due_diligence import (
    BeneficialOwner,
    IdentityCheck,
    LateEntryApproval,
    Screening,
    check_beneficial_owners,
    check_identity_gate,
    check_screening,
)
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.kinds import KindOf
from branchline_intake.domain.policy import IntakePolicy
from branchline_intake.domain.violations import D04, D05, D09, refuse
from branchline_shared.events.catalogue import (
    ClientAccountClosed,
    ClientAccountReopened,
    ClientBeneficialOwnerRecorded,
    ClientConsentGranted,
    ClientConsentWithdrawn,
    ClientErasureRequested,
    ClientIdentityVerified,
    ClientLateEntryApproved,
    ClientPersonalDataAccessed,
    ClientPersonalDataRecorded,
    ClientRegistered,
    ClientRiskAssessed,
    ClientScreened,
    ClientType,
    ConsentPurpose,
    EventPayload,
    PersonalField,
    RiskTolerance,
    RuleViolationRefused,
)


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    """One grant of consent for one purpose (D-04)."""

    event_id: uuid.UUID
    granted_at: datetime
    expires_at: datetime | None

    def covers(self, at: datetime) -> bool:
        """Whether the grant was in force at ``at``: granted by then and not yet expired."""
        return self.granted_at <= at and (self.expires_at is None or at < self.expires_at)


@dataclass(frozen=True, slots=True)
class Assessment:
    """A risk assessment (D-05). ``valid_until`` is stated by the event; for old events that
    lack it the policy's default validity applies."""

    event_id: uuid.UUID
    level: RiskTolerance
    assessed_at: datetime
    valid_until: datetime | None

    def ends_at(self, policy: IntakePolicy) -> datetime:
        """When the assessment stops being valid."""
        if self.valid_until is not None:
            return self.valid_until
        return policy.assessment_valid_until(self.assessed_at)

    def valid_at(self, at: datetime, policy: IntakePolicy) -> bool:
        """D-05: made by ``at`` and not expired at ``at``."""
        return self.assessed_at <= at < self.ends_at(policy)


@dataclass(frozen=True, slots=True)
class Client:
    """What the rules need to know of the client as a person (or organisation)."""

    registered_event_id: uuid.UUID | None = None
    client_type: ClientType | None = None
    rm_id: str | None = None
    registered_at: datetime | None = None
    identity_event_id: uuid.UUID | None = None
    identity_verified_at: datetime | None = None
    consents: Mapping[ConsentPurpose, tuple[ConsentGrant, ...]] = field(default_factory=dict)
    """Grants in force per purpose; a withdrawal removes the purpose's grants."""
    withdrawn_purposes: frozenset[ConsentPurpose] = frozenset()
    """Purposes withdrawn and not granted again since."""
    assessments: tuple[Assessment, ...] = ()
    erasure_requested_at: datetime | None = None
    recorded_fields: frozenset[PersonalField] = frozenset()
    identity_checks: tuple[IdentityCheck, ...] = ()
    """D-03: every verification, with its method and document expiry."""
    screenings: tuple[Screening, ...] = ()
    beneficial_owners: tuple[BeneficialOwner, ...] = ()
    late_entry_approvals: Mapping[uuid.UUID, LateEntryApproval] = field(default_factory=dict)
    """D-05b: approvals by the event id they approve."""
    account_closed_at: datetime | None = None
    """D-09: when the relationship ended (None while it lasts, or after a reopening)."""

    @property
    def registered(self) -> bool:
        return self.registered_event_id is not None

    @property
    def erasure_requested(self) -> bool:
        return self.erasure_requested_at is not None

    def consent_at(self, purpose: ConsentPurpose, at: datetime) -> ConsentGrant | None:
        """D-04: a grant for ``purpose`` in force at ``at``, if any."""
        for grant in self.consents.get(purpose, ()):
            if grant.covers(at):
                return grant
        return None

    def identity_verified_by(self, at: datetime) -> bool:
        """D-03: the identity was verified at or before ``at``."""
        return self.identity_verified_at is not None and self.identity_verified_at <= at

    @property
    def current_assessment(self) -> Assessment | None:
        """D-05: the most recently made assessment (whether or not it is still valid)."""
        return max(self.assessments, key=lambda a: a.assessed_at) if self.assessments else None

    def assessment_at(self, at: datetime) -> Assessment | None:
        """D-05: the assessment in force at ``at``: the latest one made by then (it supersedes
        older ones even when it has itself expired). Ties go to the later-recorded one."""
        made = [a for a in self.assessments if a.assessed_at <= at]
        return max(made, key=lambda a: a.assessed_at) if made else None

    def apply(self, event: DomainEvent) -> Client:
        """The client after ``event`` (events of other sub-aggregates change nothing)."""
        payload = event.payload
        match payload:
            case ClientRegistered():
                return replace(
                    self,
                    registered_event_id=event.event_id,
                    client_type=payload.client_type,
                    rm_id=payload.rm_id,
                    registered_at=event.occurred_at,
                )
            case ClientConsentGranted():
                return self._granted(event, payload)
            case ClientConsentWithdrawn():
                return self._withdrawn(payload)
            case ClientPersonalDataRecorded():
                return replace(self, recorded_fields=self.recorded_fields | set(payload.fields))
            case ClientIdentityVerified():
                check = IdentityCheck(
                    event.event_id, payload.method, event.occurred_at, payload.document_expires_at
                )
                verified = self._verified(event)
                return replace(verified, identity_checks=(*self.identity_checks, check))
            case ClientScreened():
                screening = Screening(event.event_id, payload.result, event.occurred_at)
                return replace(self, screenings=(*self.screenings, screening))
            case ClientBeneficialOwnerRecorded():
                owner = BeneficialOwner(
                    event.event_id, payload.owner_ref, payload.share_percent, event.occurred_at
                )
                return replace(self, beneficial_owners=(*self.beneficial_owners, owner))
            case ClientLateEntryApproved():
                approval = LateEntryApproval(event.event_id, payload.event_id, event.occurred_at)
                approvals = {**self.late_entry_approvals, payload.event_id: approval}
                return replace(self, late_entry_approvals=approvals)
            case ClientRiskAssessed():
                assessment = Assessment(
                    event.event_id, payload.level, event.occurred_at, payload.valid_until
                )
                return replace(self, assessments=(*self.assessments, assessment))
            case ClientErasureRequested():
                if self.erasure_requested_at is not None:
                    return self
                return replace(self, erasure_requested_at=event.occurred_at)
            case ClientAccountClosed():
                return replace(self, account_closed_at=event.occurred_at)
            case ClientAccountReopened():
                return replace(self, account_closed_at=None)
            case _:
                return self

    def _granted(self, event: DomainEvent, payload: ClientConsentGranted) -> Client:
        grant = ConsentGrant(event.event_id, event.occurred_at, payload.expires_at)
        consents = dict(self.consents)
        for purpose in payload.purposes:
            consents[purpose] = (*consents.get(purpose, ()), grant)
        withdrawn = self.withdrawn_purposes - set(payload.purposes)
        return replace(self, consents=consents, withdrawn_purposes=withdrawn)

    def _withdrawn(self, payload: ClientConsentWithdrawn) -> Client:
        consents = {p: g for p, g in self.consents.items() if p not in payload.purposes}
        withdrawn = self.withdrawn_purposes | set(payload.purposes)
        return replace(self, consents=consents, withdrawn_purposes=withdrawn)

    def _verified(self, event: DomainEvent) -> Client:
        earlier = self.identity_verified_at
        if earlier is not None and earlier <= event.occurred_at:
            return self
        return replace(
            self, identity_event_id=event.event_id, identity_verified_at=event.occurred_at
        )


# --- guards -------------------------------------------------------------------------------------


_REGISTRATION = KindOf(RuleViolationRefused, ClientRegistered)
_CLIENT_GUARDED = KindOf(
    ClientConsentGranted,
    ClientPersonalDataRecorded,
    ClientPersonalDataAccessed,
    ClientRiskAssessed,
    ClientAccountClosed,
    ClientAccountReopened,
)
"""The classes ``check_client_event`` has a guard for (its ``match``'s patterns)."""


def check_registration(client: Client, event: DomainEvent) -> None:
    """D-09: a client is registered once, and before anything else happens to them.

    ``rule.violation_refused`` is exempt: a refusal is recorded even for an unknown client.
    """
    kind = _REGISTRATION(event.payload)
    if kind is RuleViolationRefused:
        return
    if kind is ClientRegistered:
        if client.registered:
            raise refuse(
                D09,
                "Client already registered",
                f"the client was registered by event {client.registered_event_id}",
            )
        return
    if not client.registered:
        raise refuse(
            D09,
            "Unknown client",
            f"{event.type} needs a registered client: record client.registered first",
            field="client_id",
        )


def check_client_event(client: Client, event: DomainEvent, policy: IntakePolicy) -> EventPayload:
    """The guards of the client's own events; returns the payload to record (possibly
    completed by the domain)."""
    payload = event.payload
    if _CLIENT_GUARDED(payload) is None:  # no guard, asked once per class (#12)
        return payload
    match payload:
        case ClientConsentGranted():
            check_consent_granted(payload, event.occurred_at)
        case ClientPersonalDataRecorded():
            check_personal_data_recorded(client, payload, event.occurred_at)
        case ClientPersonalDataAccessed():
            check_not_erased(client, "personal data cannot be shown")
        case ClientRiskAssessed():
            return complete_risk_assessment(payload, event.occurred_at, policy)
        case ClientAccountClosed():
            if client.account_closed_at is not None:
                raise refuse(
                    D09,
                    "Account already closed",
                    f"the relationship ended at {client.account_closed_at.isoformat()}",
                )
        case ClientAccountReopened():
            if client.account_closed_at is None:
                raise refuse(D09, "Account not closed", "only a closed relationship is reopened")
        case _:
            pass
    return payload


def check_consent_granted(payload: ClientConsentGranted, at: datetime) -> None:
    """D-04: a consent must be in force for some time after it is given."""
    if payload.expires_at is not None and payload.expires_at <= at:
        raise refuse(
            D04,
            "Consent expires before it is given",
            f"expires_at {payload.expires_at.isoformat()} is not after the grant "
            f"({at.isoformat()})",
            field="data.expires_at",
        )


def check_not_erased(client: Client, consequence: str) -> None:
    """D-04: after an erasure request the client's personal data is restricted."""
    if client.erasure_requested_at is not None:
        raise refuse(
            D04,
            "Personal data restricted after an erasure request",
            f"erasure was requested at {client.erasure_requested_at.isoformat()}: {consequence}",
        )


def check_personal_data_recorded(
    client: Client, payload: ClientPersonalDataRecorded, at: datetime
) -> None:
    """D-04: personal fields need a consent in force for their purpose at ``at``; none after a
    withdrawal of that purpose or an erasure request."""
    check_not_erased(client, "no personal data may be recorded")
    purpose = payload.purpose
    if purpose in client.withdrawn_purposes:
        raise refuse(
            D04,
            "Consent withdrawn",
            f"the client withdrew consent for purpose {purpose.value!r}",
            field="data.purpose",
        )
    if client.consent_at(purpose, at) is None:
        raise refuse(
            D04,
            "No consent for the purpose",
            f"no consent for purpose {purpose.value!r} was in force at {at.isoformat()}",
            field="data.purpose",
        )


def complete_risk_assessment(
    payload: ClientRiskAssessed, at: datetime, policy: IntakePolicy
) -> ClientRiskAssessed:
    """D-05: an assessment states its validity; the policy's default (12 months) fills it in,
    so changing the policy later never changes what a recorded assessment meant."""
    if payload.valid_until is None:
        return payload.model_copy(update={"valid_until": policy.assessment_valid_until(at)})
    if payload.valid_until <= at:
        raise refuse(
            D05,
            "Assessment expired on arrival",
            f"valid_until {payload.valid_until.isoformat()} is not after the assessment "
            f"({at.isoformat()})",
            field="data.valid_until",
        )
    return payload


@dataclass(frozen=True, slots=True)
class DueDiligence:
    """What an account opening, sale or contract relied on (D-03, the as-of proof)."""

    identity_event_id: uuid.UUID
    screening_event_id: uuid.UUID | None


def check_due_diligence(
    client: Client, at: datetime, policy: IntakePolicy, what: str
) -> DueDiligence:
    """D-03 before an account opening, a sale or a contract: identity verified by a method
    that counts with a valid document, screening clear, beneficial owners of a corporate
    client recorded."""
    identity = check_identity_gate(client.identity_checks, at, policy, what)
    screening = check_screening(client.screenings, at, policy, what)
    check_beneficial_owners(client.client_type, client.beneficial_owners, at, what)
    return DueDiligence(identity, screening)


def check_assessment_valid(client: Client, at: datetime, policy: IntakePolicy) -> Assessment:
    """D-05: a risk assessment valid at ``at``; returns it (the as-of proof)."""
    assessment = client.assessment_at(at)
    if assessment is None:
        raise refuse(
            D05,
            "No risk assessment",
            f"the client had no risk assessment at {at.isoformat()} (client.risk_assessed)",
        )
    if not assessment.valid_at(at, policy):
        raise refuse(
            D05,
            "Risk assessment expired",
            f"the assessment {assessment.event_id} expired at "
            f"{assessment.ends_at(policy).isoformat()}: reassess the client",
        )
    return assessment
