"""Recording in the ledger: events as the consumer receives them, and every audit read."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.application.ports import AuditLedger
from branchline_audit.domain.records import read_event
from branchline_shared.clock import Clock
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition


async def record_events(
    ledger: AuditLedger,
    clock: Clock,
    events: Sequence[RecordedEvent],
    positions: Mapping[uuid.UUID, SourcePosition] | None = None,
) -> int:
    """Append ``events`` in the order received; duplicates are skipped by event id. Where
    each came from in its store (``positions``) is recorded with it, for reconcile."""
    return await ledger.append(
        [e.model_dump(mode="json") for e in events], now=clock.now(), positions=positions
    )


async def record_read(
    audit: AuditContext, reader: TrailReader, endpoint: str, filters: Mapping[str, Any]
) -> None:
    """D-11: reading the trail is itself recorded (who, what, when, why) before the answer."""
    now = audit.clock.now()
    event = read_event(
        now=now,
        subject=reader.subject,
        roles=reader.roles,
        endpoint=endpoint,
        filters=filters,
        purpose=reader.purpose,
    )
    await audit.ledger.append([event], now=now)
