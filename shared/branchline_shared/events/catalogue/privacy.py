"""Privacy events (D-04, D-11): consent, personal data recorded, shown, read, erasure and
crypto-shredding."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import (
    Field,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    EventPayload,
)
from branchline_shared.events.catalogue.checks import unique
from branchline_shared.events.catalogue.scalars import (
    Label,
    PersonalValue,
    SourcePath,
)
from branchline_shared.events.envelope import Channel, Identifier
from branchline_shared.events.vocabulary import (
    ConsentPurpose,
    PersonalField,
)


class ClientConsentGranted(EventPayload):
    """client.consent_granted (D-04): consent for the stated purposes, until ``expires_at``."""

    purposes: Annotated[tuple[ConsentPurpose, ...], Field(min_length=1), unique("purposes")]
    expires_at: Instant | None = None


class ClientConsentWithdrawn(EventPayload):
    """client.consent_withdrawn (D-04): stops further processing for these purposes."""

    purposes: Annotated[tuple[ConsentPurpose, ...], Field(min_length=1), unique("purposes")]


class ClientPersonalDataRecorded(EventPayload):
    """client.personal_data_recorded (D-04): needs a valid consent covering ``purpose``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("fields",)

    fields: Annotated[dict[PersonalField, PersonalValue], Field(min_length=1)]
    purpose: ConsentPurpose = ConsentPurpose.SERVICE


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
