"""Replaying a dead letter into the ledger after a fix: appended once at most (the ledger
skips an event id it holds)."""

from __future__ import annotations

from branchline_audit.application.ports import AuditLedger
from branchline_audit.application.recording import record_events
from branchline_shared.clock import Clock
from branchline_shared.kafka.dead_letter_log import DeadLetter, ReplayOutcome
from branchline_shared.kafka.wire import PoisonEvent, decode_event, source_position
from branchline_shared.logging_setup import describe_error


async def replay_into_ledger(
    ledger: AuditLedger, clock: Clock, letter: DeadLetter
) -> ReplayOutcome:
    try:
        event = decode_event(letter.value)
    except PoisonEvent as exc:
        return ReplayOutcome(letter, "failed", str(exc))
    position = source_position(letter.original_headers())
    try:
        added = await record_events(
            ledger, clock, [event], {event.event_id: position} if position else None
        )
    except Exception as exc:
        return ReplayOutcome(letter, "failed", f"handler failed: {describe_error(exc)}")
    return ReplayOutcome(letter, "applied" if added else "already applied")
