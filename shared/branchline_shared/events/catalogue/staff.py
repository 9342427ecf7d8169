"""Events of a member of staff (D-14, D-16): qualifications, training, interests, gifts; the
access to and erasure of their own personal texts (D-04, D-11)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import (
    Field,
    StrictBool,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    StaffEvent,
)
from branchline_shared.events.catalogue.privacy import ShredBasis
from branchline_shared.events.catalogue.scalars import (
    Label,
    SourcePath,
)
from branchline_shared.events.envelope import Channel, Identifier
from branchline_shared.events.vocabulary import (
    ProductCategory,
)


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

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    category: ProductCategory
    reason: Label


class StaffTrainingRecorded(StaffEvent):
    """staff.training_recorded (D-14): training hours (reference: 40 a year)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("topic",)

    hours: Annotated[Decimal, Field(gt=0, le=1000, max_digits=7, decimal_places=2)]
    topic: Label
    completed_at: Instant


class StaffInterestDeclared(StaffEvent):
    """staff.interest_declared (D-16): a material interest in a product; recommending it then
    needs the interest disclosed to the client."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("nature",)

    product_id: Identifier
    nature: Label


class StaffGiftRecorded(StaffEvent):
    """staff.gift_recorded (D-16): a gift or benefit offered by a client. Accepting one above
    the policy's value (default 0) breaks the policy: it is recorded and escalated."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("description",)

    client_id: Identifier
    value: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=4)]
    accepted: StrictBool
    description: Label


class StaffErasureRequested(StaffEvent):
    """staff.erasure_requested (D-04, D-11): the member of staff's own personal texts (the
    free texts sealed under their key) are restricted at once and destroyed when the retention
    of their records has run, counted from ``employment_ended_at``, or at once where the
    profile of their branch keeps nothing. Without ``employment_ended_at`` they are still
    employed: restricted, no date yet; a later request naming it sets the date."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    reason: Label
    employment_ended_at: Instant | None = None
    """The end of employment: the start of the D-11 retention of the staff's records."""


class StaffPersonalDataShredded(StaffEvent):
    """staff.personal_data_shredded (D-04, D-11; system-emitted): the member of staff's data
    key (``#staff/<staff_id>``) was destroyed. Their sealed texts (revocation reasons,
    training topics, declared interests, gift descriptions, the erasure request's reason) are
    unreadable everywhere from now on; the records themselves (categories, dates, hours,
    amounts) and the audit chain over the ciphertext stay."""

    basis: ShredBasis
    erasure_event_id: uuid.UUID
    """The ``staff.erasure_requested`` this carried out."""
    key_id: Identifier | None = None
    """The destroyed data key's id (none: no text of theirs was ever sealed)."""
    employment_ended_at: Instant | None = None
    retention_until: Instant | None = None


class StaffDataAccessRequested(StaffEvent):
    """staff.data_access_requested (D-04): the member of staff asks for a copy of the personal
    data held about them (their own texts, sealed under ``#staff/<staff_id>``). Recorded by an
    admin (the privacy officer's role); makes an answer due as a client's request does."""

    channel: Channel


class StaffPersonalDataAccessed(StaffEvent):
    """staff.personal_data_accessed (D-04, D-11; system-emitted): the member of staff's own
    texts were shown in clear, to whom (the envelope's actor), which kinds and why."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("purpose",)

    purpose: Label
    request_event_id: uuid.UUID | None = None
    """The ``staff.data_access_requested`` this answered, if any."""
    texts: Annotated[tuple[SourcePath, ...], Field(max_length=200)] = ()
    """The texts shown, as ``<event type>/<payload key>`` (which kinds of record, never their
    content)."""
