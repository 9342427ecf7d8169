"""The one envelope every Branchline event travels in (ADR-0004).

A branch system submits a :class:`SubmittedEvent`; the writing service turns it into a
:class:`RecordedEvent` by assigning the stream, its version, the recorded time and the source.
The payload (``data``) is validated per ``type`` by the catalogue (:mod:`.catalogue`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.bounded import (
    IDENTIFIER_PATTERN,
    MAX_SAFE_INTEGER,
    MAX_SEALED_LENGTH,
    CleanText,
    CleanToken,
    Instant,
    OpaqueToken,
    Sealable,
    bad_token_character,
)

Identifier = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN
    ),
    CleanToken,
    Sealable,
]
"""Ids of clients, branches, staff, visits, ...: printable ASCII, no spaces, bounded (keys)."""

Code = Annotated[str, StringConstraints(min_length=1, max_length=64), CleanToken]
"""A short code (a role, an event type): no controls, format characters or spaces."""

ShortText = Annotated[str, StringConstraints(max_length=200), CleanText]
LongText = Annotated[str, StringConstraints(max_length=4000), CleanText]


class Channel(StrEnum):
    WALK_IN = "walk_in"
    APPOINTMENT = "appointment"
    PHONE = "phone"
    ONLINE = "online"
    APP = "app"


class Actor(BaseModel):
    """Who caused the event: a member of staff, a system or the client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    role: Code


class Subject(StrEnum):
    """What an event is about (D-13, D-14, D-16): exactly one of the envelope's ``client_id``,
    ``product_id`` or ``staff_id`` names it, and each subject has its own stream."""

    CLIENT = "client"
    PRODUCT = "product"
    STAFF = "staff"

    @property
    def field(self) -> str:
        """The envelope field naming a subject of this kind."""
        return f"{self.value}_id"


_SUBJECT_FIELDS: tuple[tuple[Subject, str], ...] = tuple((s, s.field) for s in Subject)
"""Each subject kind with the envelope field naming it, in the enum's order."""
if [field for _, field in _SUBJECT_FIELDS] != ["client_id", "product_id", "staff_id"]:
    # _OneSubject's check names these three fields: a new subject kind must be added there.
    raise RuntimeError("the subject fields changed: update _OneSubject._exactly_one_subject")

LateEntryReason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), CleanText
]


def _clear_or_sealed(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Only Branchline builds a RecordedEvent (intake, from a validated submission, with the
    # reason sealed; or read back from its own stores), so a well-formed sealed value is taken
    # as it is; a submission's reason is checked by SubmittedLateEntry.
    if (
        isinstance(value, str)
        and value.startswith(SEALED_PREFIX)
        and len(value) <= MAX_SEALED_LENGTH
        and bad_token_character(value) is None
    ):
        return value
    return handler(value)


class LateEntry(BaseModel):
    """D-05b: an event recorded later than the late-entry window (补录), with the reason. The
    reason is free text: stored and published sealed with the subject's key (issue #9,
    ``branchline_shared.events.sealing_keys``); recorded before that, it may be clear."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Annotated[LateEntryReason, WrapValidator(_clear_or_sealed)]


class SubmittedLateEntry(LateEntry):
    """The late entry as a branch system submits it: the clear reason (the reserved prefix of
    sealed values is refused, like in any submitted text)."""

    reason: LateEntryReason


class _OneSubject(BaseModel):
    """An envelope with subject fields ``client_id``, ``product_id`` and ``staff_id`` (declared
    by each envelope): exactly one of them is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _exactly_one_subject(self) -> _OneSubject:
        values = self.__dict__
        # The three fields by name (#12: half the time of a list of the set ones, for every
        # envelope validated anywhere); the list is made only to say what is wrong.
        if (
            (values["client_id"] is None)
            + (values["product_id"] is None)
            + (values["staff_id"] is None)
        ) != 2:
            named = [field for _, field in _SUBJECT_FIELDS if values[field] is not None]
            raise ValueError(
                "exactly one subject is required: client_id, product_id or staff_id"
                + (f" (got {', '.join(named)})" if named else "")
            )
        return self

    # The write path asks for an event's subject several times per event (its stream, its
    # refusal stream, the decider): iterating the enum and formatting each field name was a
    # tenth of a batch's CPU (#12), so the (subject, field) pairs are computed once.
    @property
    def subject(self) -> Subject:
        values = self.__dict__
        for subject, field in _SUBJECT_FIELDS:
            if values[field] is not None:
                return subject
        raise ValueError("no subject")  # unreachable: validated to have exactly one

    @property
    def subject_id(self) -> str:
        """The id of the subject (the Kafka key: one subject's events stay in order)."""
        values = self.__dict__
        for _, field in _SUBJECT_FIELDS:
            value: str | None = values[field]
            if value is not None:
                return value
        raise ValueError("no subject")  # unreachable: validated to have exactly one


class Submitter(BaseModel):
    """Who really sent an event: the authenticated token's subject, roles and branch
    (ADR-0011), recorded next to the ``actor`` the caller declared."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sub: Identifier
    roles: Annotated[
        tuple[Annotated[str, StringConstraints(max_length=32)], ...], Field(max_length=8)
    ]
    branch_id: Identifier | None = None


class SubmittedEvent(_OneSubject):
    """An event as a branch system sends it to intake (docs/api.md, "Submitted event")."""

    event_id: uuid.UUID | None = None
    type: Annotated[str, StringConstraints(min_length=3, max_length=64), CleanToken]
    occurred_at: Instant
    client_id: Identifier | None = None
    product_id: Identifier | None = None
    staff_id: Identifier | None = None
    branch_id: Identifier | None = None
    channel: Channel | None = None
    actor: Actor
    correlation_id: OpaqueToken | None = None
    causation_id: OpaqueToken | None = None
    expected_version: Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER, strict=True)] | None = None
    late_entry: SubmittedLateEntry | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class RecordedEvent(_OneSubject):
    """An event as stored in an event store and published on Kafka (JSON on the wire).

    ``occurred_at`` is when it happened (rules decide as of it), ``recorded_at`` when intake
    received it (D-05b: both are kept; a late entry carries its reason)."""

    event_id: uuid.UUID
    type: Annotated[str, CleanToken]
    schema_version: int = 1
    occurred_at: Instant
    recorded_at: Instant
    source: str
    actor: Actor
    client_id: str | None = None
    product_id: str | None = None
    staff_id: str | None = None
    branch_id: str | None = None
    channel: Channel | None = None
    stream_id: str
    stream_version: int
    correlation_id: Annotated[str, CleanToken] | None = None
    causation_id: Annotated[str, CleanToken] | None = None
    late_entry: LateEntry | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    submitted_by: Submitter | None = None
    """The authenticated sender of an accepted event; None for events a service emits on its
    own (timers) and for events recorded before it was introduced."""
    synthetic: bool = False
    """True for events caused by the dev-mode test clock: not facts of the real world."""

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        return utc(moment)


def client_stream_id(client_id: str) -> str:
    """All of one client's events form one stream, so every rule over a client is checked
    against a consistent history and Kafka's key (the client id) keeps them in order."""
    return f"client-{client_id}"


def product_stream_id(product_id: str) -> str:
    """A product's shelf history (D-13): approval, re-ratings, suspension, withdrawal."""
    return f"product-{product_id}"


def staff_stream_id(staff_id: str) -> str:
    """A member of staff's qualifications, training, interests and gifts (D-14, D-16)."""
    return f"staff-{staff_id}"


def subject_stream_id(subject: Subject, subject_id: str) -> str:
    """The stream of one subject's events."""
    if subject is Subject.PRODUCT:
        return product_stream_id(subject_id)
    if subject is Subject.STAFF:
        return staff_stream_id(subject_id)
    return client_stream_id(subject_id)


def utc(moment: datetime) -> datetime:
    """Normalise an aware datetime to UTC (ADR-0008: UTC everywhere inside)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time must carry an offset")
    return moment.astimezone(UTC)
