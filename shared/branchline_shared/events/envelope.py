"""The one envelope every Branchline event travels in (ARCHITECTURE.md decision 4).

A branch system submits a :class:`SubmittedEvent`; the writing service turns it into a
:class:`RecordedEvent` by assigning the stream, its version, the recorded time and the source.
The payload (``data``) is validated per ``type`` by the catalogue (:mod:`.catalogue`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from branchline_shared.events.bounded import (
    MAX_SAFE_INTEGER,
    CleanText,
    CleanToken,
    Instant,
    OpaqueToken,
)

Identifier = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$"
    ),
    CleanToken,
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


class Submitter(BaseModel):
    """Who really sent an event: the authenticated token's subject, roles and branch
    (decision 11), recorded next to the ``actor`` the caller declared."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sub: Identifier
    roles: Annotated[
        tuple[Annotated[str, StringConstraints(max_length=32)], ...], Field(max_length=8)
    ]
    branch_id: Identifier | None = None


class SubmittedEvent(BaseModel):
    """An event as a branch system sends it to intake (API.md, "Submitted event")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID | None = None
    type: Annotated[str, StringConstraints(min_length=3, max_length=64), CleanToken]
    occurred_at: Instant
    client_id: Identifier
    branch_id: Identifier | None = None
    channel: Channel | None = None
    actor: Actor
    correlation_id: OpaqueToken | None = None
    causation_id: OpaqueToken | None = None
    expected_version: Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER, strict=True)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class RecordedEvent(BaseModel):
    """An event as stored in an event store and published on Kafka (JSON on the wire)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    type: Annotated[str, CleanToken]
    schema_version: int = 1
    occurred_at: Instant
    recorded_at: Instant
    source: str
    actor: Actor
    client_id: str
    branch_id: str | None = None
    channel: Channel | None = None
    stream_id: str
    stream_version: int
    correlation_id: Annotated[str, CleanToken] | None = None
    causation_id: Annotated[str, CleanToken] | None = None
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


def utc(moment: datetime) -> datetime:
    """Normalise an aware datetime to UTC (decision 8: UTC everywhere inside)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time must carry an offset")
    return moment.astimezone(UTC)
