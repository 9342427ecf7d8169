"""Recording events in the ledger, as the consumer receives them."""

from __future__ import annotations

from collections.abc import Sequence

from branchline_audit.adapters.ledger import PostgresLedger
from branchline_shared.clock import Clock
from branchline_shared.events.envelope import RecordedEvent


async def record_events(
    ledger: PostgresLedger, clock: Clock, events: Sequence[RecordedEvent]
) -> int:
    """Append ``events`` in the order received; duplicates are skipped by event id."""
    return await ledger.append([e.model_dump(mode="json") for e in events], now=clock.now())
