"""The bases of every payload model: immutable, unknown fields refused, and the
family bases naming the id each family of events carries."""

from __future__ import annotations

from typing import ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
)

from branchline_shared.events.envelope import Identifier, Subject


class PayloadPart(BaseModel):
    """A nested object inside a payload: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EventPayload(BaseModel):
    """Base of every payload model: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    SCHEMA_VERSION: ClassVar[int] = 1
    """Version of this payload's schema; a breaking change adds a version and an upcaster."""
    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ()
    """Payload keys holding personal data or other free text (the whole value under each key;
    ``a.b`` the key ``b`` of the object under ``a``): sealed with the subject's key before
    anything is stored (a client's; a member of staff's own; the institution's for the product
    shelf: ``branchline_shared.events.sealing_keys``), masked for readers, shredded with the
    key."""
    SYSTEM_TEXT_PATHS: ClassVar[tuple[str, ...]] = ()
    """Free text that Branchline writes itself, never taken from a caller (only on types of
    :data:`SYSTEM_EVENT_TYPES`). Every other free text is sealed; everything else is a closed
    code, a bounded identifier, a number or a time (docs/input-validation.md)."""
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
