"""The record of a read of a client's data (D-11: who looked at what, when and why).

Reads outside the audit API (docs/access-control.md, "Reads are recorded") append a
``client.data_read`` to the serving service's own event store, on that service's reads stream
of the client, so it reaches the audit trail like every event. What the record says is the
same whichever service served the read, so it is written here once; each service only locks
its stream and appends the event in its own unit of work.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from branchline_shared.events.catalogue import CATALOGUE_VERSION, ClientDataRead, EventType
from branchline_shared.events.envelope import Actor, RecordedEvent, Submitter

READ_EVENT_TYPE = EventType.CLIENT_DATA_READ.value


def client_read(
    who: Submitter,
    *,
    source: str,
    client_id: str,
    stream_id: str,
    stream_version: int,
    route: str,
    purpose: str | None,
    at: datetime,
) -> RecordedEvent:
    """The ``client.data_read`` of ``who`` reading ``client_id`` through ``route`` of
    ``source`` at ``at``, as event ``stream_version`` of the reads stream ``stream_id``; an
    empty ``purpose`` is none. The actor is the submitter (their first role), who read."""
    payload = ClientDataRead(service=source, route=route, purpose=purpose or None)
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=READ_EVENT_TYPE,
        schema_version=CATALOGUE_VERSION[READ_EVENT_TYPE],
        occurred_at=at,
        recorded_at=at,
        source=source,
        actor=Actor(id=who.sub, role=who.roles[0] if who.roles else "unknown"),
        client_id=client_id,
        branch_id=who.branch_id,
        stream_id=stream_id,
        stream_version=stream_version,
        data=payload.model_dump(mode="json", exclude_none=True),
        submitted_by=who,
    )
