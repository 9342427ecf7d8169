"""Recorded events for tests that feed a topic or a store directly (not through intake), and
the request body of a registration as a branch system sends it to intake."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from branchline_shared.events.envelope import (
    Actor,
    Channel,
    RecordedEvent,
    Subject,
    subject_stream_id,
)

TELLER = Actor(id="staff-17", role="teller")
ADMIN = Actor(id="admin-1", role="admin")


def recorded_event(
    event_type: str,
    data: Mapping[str, Any],
    *,
    at: datetime,
    client_id: str | None = None,
    product_id: str | None = None,
    version: int = 1,
    actor: Actor = TELLER,
    branch_id: str | None = None,
    channel: Channel | None = None,
) -> RecordedEvent:
    """Event ``version`` of its subject's stream (the client's, else the product's), as
    intake records it: a fresh id, occurred and recorded at ``at``."""
    subject, subject_id = (
        (Subject.CLIENT, client_id) if client_id is not None else (Subject.PRODUCT, product_id)
    )
    if subject_id is None:
        raise ValueError("a recorded event names its client or its product")
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        occurred_at=at,
        recorded_at=at,
        source="intake",
        actor=actor,
        client_id=client_id,
        product_id=product_id,
        branch_id=branch_id,
        channel=channel,
        stream_id=subject_stream_id(subject, subject_id),
        stream_version=version,
        data=dict(data),
    )


def registration_body(
    client_id: str,
    event_id: uuid.UUID | None,
    occurred_at: datetime,
    /,
    *,
    actor: Actor = TELLER,
    **fields: Any,
) -> dict[str, Any]:
    """A ``client.registered`` as a branch system posts it, with its own event id if given;
    ``fields`` set or replace envelope fields, the three named first among them (an expected
    version, an event id as a string, a wrong value, an unknown field)."""
    return {
        **({"event_id": str(event_id)} if event_id else {}),
        "type": "client.registered",
        "occurred_at": occurred_at.isoformat(),
        "client_id": client_id,
        "branch_id": "BR-001",
        "channel": "walk_in",
        "actor": {"id": actor.id, "role": actor.role},
        "data": {"client_type": "individual", "rm_id": "rm-7"},
        **fields,
    }
