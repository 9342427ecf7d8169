"""One client's whole history, folded into the state the rules decide on.

All events of one client form one stream (``client-<client_id>``), so every rule is checked
against a consistent history. The state changes only by applying events
(:meth:`ClientState.apply`); applying never refuses: it folds whatever was recorded, even under
older rules. Deciding is :func:`~.decision.decide`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from branchline_intake.domain.appointment import Appointment, apply_appointment_event
from branchline_intake.domain.client import Client
from branchline_intake.domain.complaint import Complaint, apply_complaint_event
from branchline_intake.domain.consultation import Consultation, apply_consultation_event
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.product import ProductSale, apply_product_event
from branchline_intake.domain.visit import Visit, apply_visit_event
from branchline_shared.events.catalogue import (
    AppointmentEvent,
    ComplaintEvent,
    ConsultationEvent,
    ProductEvent,
    ProductSold,
    VisitBusinessHandled,
    VisitEvent,
)
from branchline_shared.events.envelope import RecordedEvent


@dataclass(frozen=True, slots=True)
class BusinessActivity:
    """D-09 inputs: when the client did business, and the assets under management.

    Business is ``visit.business_handled`` and ``product.sold``. The assets under management
    are approximated by the sum of all ``product.sold`` amounts: the catalogue has no
    redemption, maturity or valuation event yet, so the figure only grows and ignores currency.
    """

    first_business_at: datetime | None = None
    last_business_at: datetime | None = None
    assets_under_management: Decimal = Decimal(0)

    def apply(self, event: DomainEvent) -> BusinessActivity:
        payload = event.payload
        if not isinstance(payload, VisitBusinessHandled | ProductSold):
            return self
        at = event.occurred_at
        first, last = self.first_business_at, self.last_business_at
        aum = self.assets_under_management
        if isinstance(payload, ProductSold):
            aum += payload.amount
        return BusinessActivity(
            first_business_at=at if first is None or at < first else first,
            last_business_at=at if last is None or at > last else last,
            assets_under_management=aum,
        )


@dataclass(frozen=True, slots=True)
class ClientState:
    """The client and all sub-aggregates, as of ``version`` applied events."""

    version: int = 0
    """Number of events applied: the stream version the next append expects."""
    client: Client = field(default_factory=Client)
    visits: Mapping[str, Visit] = field(default_factory=dict)
    appointments: Mapping[str, Appointment] = field(default_factory=dict)
    consultations: Mapping[str, Consultation] = field(default_factory=dict)
    complaints: Mapping[str, Complaint] = field(default_factory=dict)
    products: Mapping[str, ProductSale] = field(default_factory=dict)
    activity: BusinessActivity = field(default_factory=BusinessActivity)

    def apply(self, event: DomainEvent) -> ClientState:
        """The state after ``event``. Never refuses; unknown references change nothing."""
        payload = event.payload
        version = self.version + 1
        activity = self.activity.apply(event)
        if isinstance(payload, VisitEvent):
            visits = apply_visit_event(self.visits, event)
            return replace(self, version=version, visits=visits, activity=activity)
        if isinstance(payload, AppointmentEvent):
            appointments = apply_appointment_event(self.appointments, event)
            return replace(self, version=version, appointments=appointments)
        if isinstance(payload, ConsultationEvent):
            consultations = apply_consultation_event(self.consultations, event)
            return replace(self, version=version, consultations=consultations)
        if isinstance(payload, ComplaintEvent):
            complaints = apply_complaint_event(self.complaints, event)
            return replace(self, version=version, complaints=complaints)
        if isinstance(payload, ProductEvent):
            products = apply_product_event(self.products, event)
            return replace(self, version=version, products=products, activity=activity)
        return replace(self, version=version, client=self.client.apply(event))


NO_EVENTS = ClientState(
    client=Client(consents=MappingProxyType({}), late_entry_approvals=MappingProxyType({})),
    visits=MappingProxyType({}),
    appointments=MappingProxyType({}),
    consultations=MappingProxyType({}),
    complaints=MappingProxyType({}),
    products=MappingProxyType({}),
)
"""``ClientState()``, the state of a client with no events, as one shared value (#12: made
afresh for every new client of a batch it was about 2 % of intake's CPU). Its mappings are
read-only views, so no caller can change it; ``apply`` never changes a state anyway, it
makes a new one."""


def rebuild(events: Iterable[DomainEvent]) -> ClientState:
    """The state of a client from their stream, in stream order."""
    state = NO_EVENTS
    for event in events:
        state = state.apply(event)
    return state


def rebuild_from_recorded(events: Iterable[RecordedEvent]) -> ClientState:
    """:func:`rebuild` from stored envelopes (payloads parsed by the catalogue)."""
    return rebuild(DomainEvent.from_recorded(event) for event in events)
