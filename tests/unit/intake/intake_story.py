"""Given/when/then for the intake domain: a client's story, and payload builders.

``Story().given(...)`` runs each past event through ``decide`` (so a given history is one the
rules accept) and applies it; ``when(...)`` decides on a candidate without applying it.
Event ids are deterministic (1, 2, 3, ...); times advance one minute per event unless given.

The product shelf and the staff records (D-13, D-14) live on other streams: a story keeps
them in ``shelf`` and ``staff``. By default (``auto_shelf``) a product a story names for the
first time is put on the shelf at the risk the event states (R3 if none), so stories about
D-05 need not set up the shelf; the acting staff (``actor``, default the RM) is qualified for
every category. Stories about D-13/D-14 set ``auto_shelf=False`` and build their own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from branchline_intake.domain import (
    DEFAULT_POLICY,
    Accepted,
    ClientState,
    Decision,
    DomainEvent,
    IntakePolicy,
    Refused,
    RuleViolation,
    decide,
)
from branchline_intake.domain.related import Related
from branchline_intake.domain.shelf import ShelfProduct
from branchline_intake.domain.staff import StaffMember
from branchline_shared.domain.classification import LifecycleFacts
from branchline_shared.events import catalogue as c
from branchline_shared.events.envelope import Actor, Channel, RecordedEvent, SubmittedEvent

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
BRANCH = "BR-001"
RM = "rm-42"
SHELVED_AT = T0 - timedelta(days=30)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


@dataclass
class Story:
    policy: IntakePolicy = DEFAULT_POLICY
    state: ClientState = field(default_factory=ClientState)
    history: list[DomainEvent] = field(default_factory=list)
    now: datetime = T0
    actor: str = RM
    auto_shelf: bool = True
    shelf: dict[str, ShelfProduct] = field(default_factory=dict)
    staff: dict[str, StaffMember] = field(default_factory=dict)
    subject_events: dict[str, list[DomainEvent]] = field(default_factory=dict)
    """The shelf's and the staff's events by stream (``product-P-1``, ``staff-rm-42``)."""
    _next_id: int = 1

    def event(
        self, payload: c.EventPayload, at: datetime | None = None, branch_id: str | None = BRANCH
    ) -> DomainEvent:
        if at is None:
            self.now += timedelta(minutes=1)
            at = self.now
        else:
            self.now = max(self.now, at)
        return DomainEvent.of(
            payload, at, event_id=self.next_id(), branch_id=branch_id, actor_id=self.actor
        )

    def next_id(self) -> uuid.UUID:
        event_id = uuid.UUID(int=self._next_id)
        self._next_id += 1
        return event_id

    def shelve(
        self, *payloads: c.EventPayload, product_id: str, at: datetime = SHELVED_AT
    ) -> Story:
        """Apply product-shelf events (approved, re-rated, ...) to the story's shelf."""
        product = self.shelf.get(product_id) or ShelfProduct(product_id)
        for payload in payloads:
            event = DomainEvent.of(payload, at, event_id=self.next_id())
            product = product.apply(event)
            self.subject_events.setdefault(f"product-{product_id}", []).append(event)
        self.shelf[product_id] = product
        return self

    def record_staff(
        self, *payloads: c.EventPayload, staff_id: str = RM, at: datetime = SHELVED_AT
    ) -> Story:
        """Apply staff events (qualified, interest declared, ...) to the story's records."""
        member = self.staff.get(staff_id) or StaffMember(staff_id)
        for payload in payloads:
            event = DomainEvent.of(payload, at, event_id=self.next_id())
            member = member.apply(event)
            self.subject_events.setdefault(f"staff-{staff_id}", []).append(event)
        self.staff[staff_id] = member
        return self

    def related(self, event: DomainEvent) -> Related:
        payload = event.payload
        if self.auto_shelf and isinstance(payload, c.ProductEvent):
            if payload.product_id not in self.shelf:
                stated = getattr(payload, "product_risk", None) or c.ProductRisk.R3
                self.shelve(approved(stated), product_id=payload.product_id)
            if self.actor not in self.staff:
                self.record_staff(*(qualified(category) for category in c.ProductCategory))
        return Related(products=dict(self.shelf), staff=dict(self.staff))

    def decide(self, event: DomainEvent) -> Decision:
        return decide(self.state, event, self.policy, self.related(event))

    def given(self, *payloads: c.EventPayload, at: datetime | None = None) -> Story:
        for payload in payloads:
            self.given_event(self.event(payload, at))
        return self

    def given_event(self, event: DomainEvent) -> DomainEvent:
        decision = self.decide(event)
        assert isinstance(decision, Accepted), f"given {event.type} was refused: {decision}"
        self.state = self.state.apply(decision.event)
        self.history.append(decision.event)
        return decision.event

    def last(self) -> DomainEvent:
        return self.history[-1]

    def when(
        self,
        payload: c.EventPayload,
        at: datetime | None = None,
        branch_id: str | None = BRANCH,
    ) -> Decision:
        return self.decide(self.event(payload, at, branch_id))

    def onboarded(self, level: c.RiskTolerance = c.RiskTolerance.C3) -> Story:
        """Registered, identity verified, screened clear, assessed."""
        return self.given(registered(), verified(), screened(), assessed(level))

    def ready_to_sell(
        self, product_id: str = "P-1", risk: c.ProductRisk = c.ProductRisk.R3
    ) -> Story:
        """Recommended, disclosed and acknowledged, terms confirmed."""
        return self.given(
            recommended(product_id, risk),
            disclosed(product_id, risk=risk),
            terms(product_id),
        )


def as_recorded(event: DomainEvent, version: int, client_id: str = "C-1") -> RecordedEvent:
    """``event`` as the event store holds it (JSON-compatible data, stream and version)."""
    return RecordedEvent(
        event_id=event.event_id,
        type=event.type,
        occurred_at=event.occurred_at,
        recorded_at=event.occurred_at,
        source="intake",
        actor=Actor(id=event.actor_id or "staff-1", role="teller"),
        client_id=client_id,
        branch_id=event.branch_id,
        stream_id=f"client-{client_id}",
        stream_version=version,
        data=event.data(),
    )


def as_subject_stream(stream_id: str, events: list[DomainEvent]) -> list[RecordedEvent]:
    """A product's or a member of staff's events as the event store holds them."""
    kind, _, subject_id = stream_id.partition("-")
    return [
        RecordedEvent(
            event_id=e.event_id,
            type=e.type,
            occurred_at=e.occurred_at,
            recorded_at=e.occurred_at,
            source="intake",
            actor=Actor(id="admin-1", role="admin"),
            **{f"{kind}_id": subject_id},
            stream_id=stream_id,
            stream_version=i + 1,
            data=e.data(),
        )
        for i, e in enumerate(events)
    ]


def related_streams(story: Story) -> dict[str, list[RecordedEvent]]:
    """The story's shelf and staff streams, as stored (for the write path's decider)."""
    return {s: as_subject_stream(s, events) for s, events in story.subject_events.items()}


def as_stream(events: list[DomainEvent], client_id: str = "C-1") -> list[RecordedEvent]:
    return [as_recorded(e, i + 1, client_id) for i, e in enumerate(events)]


def accepted(decision: Decision) -> DomainEvent:
    assert isinstance(decision, Accepted), f"expected acceptance, got {decision}"
    return decision.event


def refused(decision: Decision, rule: str) -> RuleViolation:
    assert isinstance(decision, Refused), f"expected a {rule} refusal, got {decision}"
    assert decision.violation.rule == rule, decision.violation
    assert decision.violation.title
    assert decision.violation.detail
    return decision.violation


# --- payload builders ---------------------------------------------------------------------------


def registered(client_type: c.ClientType = c.ClientType.INDIVIDUAL) -> c.ClientRegistered:
    return c.ClientRegistered(client_type=client_type, rm_id="rm-42")


def consent(
    *purposes: c.ConsentPurpose, expires_at: datetime | None = None
) -> c.ClientConsentGranted:
    chosen = purposes or (c.ConsentPurpose.SERVICE,)
    return c.ClientConsentGranted(purposes=chosen, expires_at=expires_at)


def withdrawal(*purposes: c.ConsentPurpose) -> c.ClientConsentWithdrawn:
    return c.ClientConsentWithdrawn(purposes=purposes or (c.ConsentPurpose.SERVICE,))


def personal_data(
    purpose: c.ConsentPurpose = c.ConsentPurpose.SERVICE,
) -> c.ClientPersonalDataRecorded:
    return c.ClientPersonalDataRecorded(
        fields={c.PersonalField.NAME: "Wang Fang", c.PersonalField.PHONE: "+86 138 0013 8000"},
        purpose=purpose,
    )


def verified(
    method: c.IdentityMethod = c.IdentityMethod.NETWORKED_ID_CHECK,
    expires_at: datetime | None = None,
) -> c.ClientIdentityVerified:
    return c.ClientIdentityVerified(
        method=method, document_type=c.DocumentType.RESIDENT_ID, document_expires_at=expires_at
    )


def screened(result: c.ScreeningResult = c.ScreeningResult.CLEAR) -> c.ClientScreened:
    return c.ClientScreened(result=result)


def owner(share: str = "40") -> c.ClientBeneficialOwnerRecorded:
    return c.ClientBeneficialOwnerRecorded(owner_ref="BO-1", share_percent=Decimal(share))


def late_approval(event_id: uuid.UUID) -> c.ClientLateEntryApproved:
    return c.ClientLateEntryApproved(event_id=event_id, reason="paper record checked")


def approved(
    risk: c.ProductRisk = c.ProductRisk.R3,
    category: c.ProductCategory = c.ProductCategory.FUND,
    eligible: tuple[c.ClientType, ...] = tuple(c.ClientType),
) -> c.ProductApproved:
    return c.ProductApproved(
        name="a product", category=category, risk=risk, eligible_client_types=eligible
    )


def rerated(risk: c.ProductRisk, effective_at: datetime) -> c.ProductRerated:
    return c.ProductRerated(risk=risk, effective_at=effective_at, reason="re-rated")


def qualified(
    category: c.ProductCategory = c.ProductCategory.FUND, until: datetime | None = None
) -> c.StaffQualified:
    return c.StaffQualified(
        category=category,
        certificate_id="CERT-1",
        valid_until=until or T0 + timedelta(days=5 * 365),
    )


def assessed(
    level: c.RiskTolerance = c.RiskTolerance.C3, valid_until: datetime | None = None
) -> c.ClientRiskAssessed:
    return c.ClientRiskAssessed(level=level, valid_until=valid_until)


def erasure() -> c.ClientErasureRequested:
    return c.ClientErasureRequested(reason="client asks for erasure")


def data_accessed() -> c.ClientPersonalDataAccessed:
    return c.ClientPersonalDataAccessed(fields=(c.PersonalField.NAME,), purpose="access request")


def arrived(visit_id: str = "V-1") -> c.VisitArrived:
    return c.VisitArrived(visit_id=visit_id, ticket="A001")


def needs(category: c.VisitCategory, visit_id: str = "V-1") -> c.VisitNeedsConfirmed:
    return c.VisitNeedsConfirmed(visit_id=visit_id, category=category)


def guidance(visit_id: str = "V-1") -> c.VisitGuidanceGiven:
    return c.VisitGuidanceGiven(visit_id=visit_id)


def documents(complete: bool = True, visit_id: str = "V-1") -> c.VisitDocumentsChecked:
    missing = () if complete else ("proof of address",)
    return c.VisitDocumentsChecked(visit_id=visit_id, complete=complete, missing=missing)


def handled(visit_id: str = "V-1") -> c.VisitBusinessHandled:
    return c.VisitBusinessHandled(
        visit_id=visit_id, counter="window 3", started_at=minutes(0), ended_at=minutes(10)
    )


def next_steps(visit_id: str = "V-1") -> c.VisitNextStepsExplained:
    return c.VisitNextStepsExplained(visit_id=visit_id)


def closed(visit_id: str = "V-1") -> c.VisitClosed:
    return c.VisitClosed(visit_id=visit_id, outcome=c.VisitOutcome.NORMAL)


def survey(visit_id: str | None = "V-1") -> c.FeedbackSurveyAnswered:
    scores = c.SatisfactionScores(
        attitude=90, professionalism=80, response_speed=70, risk_management=60, convenience=50
    )
    return c.FeedbackSurveyAnswered(visit_id=visit_id, scores=scores)


def booked(appointment_id: str = "A-1") -> c.AppointmentBooked:
    return c.AppointmentBooked(
        appointment_id=appointment_id, slot_start=days(1), purpose="wealth review", staff_id="s-1"
    )


def confirmed(appointment_id: str = "A-1") -> c.AppointmentConfirmed:
    return c.AppointmentConfirmed(appointment_id=appointment_id)


def cancelled(appointment_id: str = "A-1") -> c.AppointmentCancelled:
    return c.AppointmentCancelled(appointment_id=appointment_id)


def attended(appointment_id: str = "A-1") -> c.AppointmentAttended:
    return c.AppointmentAttended(appointment_id=appointment_id)


def no_show(appointment_id: str = "A-1") -> c.AppointmentNoShow:
    return c.AppointmentNoShow(appointment_id=appointment_id)


def opened(consultation_id: str = "Q-1") -> c.ConsultationOpened:
    return c.ConsultationOpened(
        consultation_id=consultation_id, channel=Channel.ONLINE, question="fees?"
    )


def answered(
    consultation_id: str = "Q-1", *, promised_by: datetime | None = None
) -> c.ConsultationAnswered:
    answer = None if promised_by is not None else "1.2% subscription"
    return c.ConsultationAnswered(
        consultation_id=consultation_id, answer=answer, promised_by=promised_by
    )


def recommended(
    product_id: str = "P-1", risk: c.ProductRisk = c.ProductRisk.R3
) -> c.ProductRecommended:
    return c.ProductRecommended(product_id=product_id, product_risk=risk)


ALL_ITEMS = tuple(c.DisclosureItem)


def disclosed(
    product_id: str = "P-1",
    *,
    acknowledged: bool = True,
    risk: c.ProductRisk | None = None,
    items: tuple[c.DisclosureItem, ...] = ALL_ITEMS,
    holding_period: str | None = "1 year",
) -> c.ProductRiskDisclosed:
    return c.ProductRiskDisclosed(
        product_id=product_id,
        acknowledged=acknowledged,
        product_risk=risk,
        items=items,
        holding_period=holding_period,
    )


def terms(product_id: str = "P-1", **named: str) -> c.ProductTermsConfirmed:
    chosen = named or {"rate": "3.1%", "period": "1y", "fees": "none"}
    return c.ProductTermsConfirmed(product_id=product_id, terms=c.ProductTerms(**chosen))


def sold(
    product_id: str = "P-1",
    amount: str = "100000",
    risk: c.ProductRisk | None = None,
    **extra: Any,
) -> c.ProductSold:
    return c.ProductSold(product_id=product_id, amount=Decimal(amount), product_risk=risk, **extra)


def received(
    complaint_id: str = "K-1", severity: c.ComplaintSeverity = c.ComplaintSeverity.GENERAL
) -> c.ComplaintReceived:
    return c.ComplaintReceived(complaint_id=complaint_id, severity=severity, summary="long wait")


def acknowledged(complaint_id: str = "K-1") -> c.ComplaintAcknowledged:
    return c.ComplaintAcknowledged(complaint_id=complaint_id, owner_id="rm-42")


def progress(complaint_id: str = "K-1") -> c.ComplaintProgressReported:
    return c.ComplaintProgressReported(complaint_id=complaint_id, note="logs reviewed")


def resolved(complaint_id: str = "K-1") -> c.ComplaintResolved:
    return c.ComplaintResolved(complaint_id=complaint_id, resolution="apology and fix")


def confirmed_by_client(
    complaint_id: str = "K-1", satisfied: bool = True
) -> c.ComplaintConfirmedByClient:
    return c.ComplaintConfirmedByClient(complaint_id=complaint_id, satisfied=satisfied)


def complaint_closed(complaint_id: str = "K-1") -> c.ComplaintClosed:
    return c.ComplaintClosed(complaint_id=complaint_id)


def lifecycle_facts(state: ClientState) -> LifecycleFacts:
    """The D-09 facts of intake's client state, for the one lifecycle rule
    (``branchline_shared.domain.classification``)."""
    assert state.client.registered_at is not None
    return LifecycleFacts(
        registered_at=state.client.registered_at,
        identity_verified_at=state.client.identity_verified_at,
        first_business_at=state.activity.first_business_at,
        last_business_at=state.activity.last_business_at,
        assets_under_management=state.activity.assets_under_management,
        account_closed_at=state.client.account_closed_at,
    )


def submitted_registrations(count: int, at: datetime) -> list[SubmittedEvent]:
    """``count`` registrations of new clients ``C-0``, ``C-1``, ... at ``at``, as a batch
    submits them (each its own stream)."""
    return [
        SubmittedEvent.model_validate(
            {
                "type": "client.registered",
                "occurred_at": at.isoformat(),
                "client_id": f"C-{i}",
                "branch_id": "BR-1",
                "channel": "walk_in",
                "actor": {"id": "s-1", "role": "teller"},
                "data": {"client_type": "individual", "rm_id": "rm-1"},
            }
        )
        for i in range(count)
    ]
