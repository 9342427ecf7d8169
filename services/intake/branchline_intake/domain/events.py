"""The events the domain reasons over: a small pure value, independent of the wire envelope."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from branchline_shared.events.catalogue import EventPayload, event_type_of, parse_payload
from branchline_shared.events.envelope import RecordedEvent, SubmittedEvent


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """One event of a client's stream, with its parsed payload.

    Both the history (events already recorded) and the candidate (the event to decide on) are
    ``DomainEvent`` s. ``type`` must be the type ``payload`` is registered under.
    """

    event_id: uuid.UUID
    type: str
    occurred_at: datetime
    payload: EventPayload
    branch_id: str | None = None
    actor_id: str | None = None
    """Who acted (D-14, D-16: the staff recommending or selling)."""
    received_at: datetime | None = None
    """When intake received it (D-05b); ``None`` where no receipt is involved (e.g. tests of
    the rules alone), and then the no-backdating bounds are not checked."""
    late_entry_reason: str | None = None
    """D-05b: the reason of a late entry (补录), when flagged as one."""

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must carry an offset")
        registered = event_type_of(self.payload)
        if registered != self.type:
            raise ValueError(f"payload {type(self.payload).__name__} is not of type {self.type!r}")

    @classmethod
    def of(
        cls,
        payload: EventPayload,
        occurred_at: datetime,
        *,
        event_id: uuid.UUID,
        branch_id: str | None = None,
        actor_id: str | None = None,
        received_at: datetime | None = None,
        late_entry_reason: str | None = None,
    ) -> DomainEvent:
        """An event whose type is the one its payload model is registered under."""
        return cls(
            event_id=event_id,
            type=event_type_of(payload),
            occurred_at=occurred_at,
            payload=payload,
            branch_id=branch_id,
            actor_id=actor_id,
            received_at=received_at,
            late_entry_reason=late_entry_reason,
        )

    @classmethod
    def from_recorded(
        cls, recorded: RecordedEvent, *, stored: bool = True, payload: EventPayload | None = None
    ) -> DomainEvent:
        """A recorded event (its payload parsed by the catalogue). ``stored``: read back from
        the event store, its personal values sealed; ``False`` for a candidate, whose payload
        is still clear (decided first, sealed once accepted). ``payload``: the candidate's
        payload as the catalogue already validated it (``recorded.data`` is its dump), handed
        on instead of parsed a second time (#12); its type must be ``recorded.type``'s, which
        ``__post_init__`` checks."""
        return cls(
            event_id=recorded.event_id,
            type=recorded.type,
            occurred_at=recorded.occurred_at,
            payload=(
                payload
                if payload is not None
                else parse_payload(recorded.type, recorded.data, stored=stored)
            ),
            branch_id=recorded.branch_id,
            actor_id=recorded.actor.id,
            received_at=recorded.recorded_at,
            late_entry_reason=recorded.late_entry.reason if recorded.late_entry else None,
        )

    @classmethod
    def from_submitted(
        cls, submitted: SubmittedEvent, *, fallback_event_id: uuid.UUID
    ) -> DomainEvent:
        """A submission, as the candidate of :func:`~.decision.decide`. Raises
        ``pydantic.ValidationError`` or ``UnknownEventType`` for an invalid payload. The
        submission's own ``event_id`` (the idempotency key) wins; the application mints
        ``fallback_event_id`` for a submission without one (the domain mints no ids)."""
        return cls(
            event_id=submitted.event_id or fallback_event_id,
            type=submitted.type,
            occurred_at=submitted.occurred_at,
            payload=parse_payload(submitted.type, submitted.data),
            branch_id=submitted.branch_id,
            actor_id=submitted.actor.id,
            late_entry_reason=submitted.late_entry.reason if submitted.late_entry else None,
        )

    def data(self) -> dict[str, Any]:
        """The payload as JSON-compatible ``data`` of the envelope (what is stored; absent
        optional fields are left out, as the write path stores them)."""
        return self.payload.model_dump(mode="json", exclude_none=True)
