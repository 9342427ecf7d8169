"""Replaying a dead letter into the read models after a fix: the same code the worker runs,
applied once at most (the applied event id is recorded in the same transaction)."""

from __future__ import annotations

from branchline_followup.application.ports import UnitsOfWork
from branchline_followup.application.projector import Projection, apply_event
from branchline_shared.events.typed import UnreadablePayload, decode
from branchline_shared.kafka.dead_letter_log import DeadLetter, ReplayOutcome
from branchline_shared.kafka.wire import PoisonEvent, decode_current_event, source_position
from branchline_shared.logging_setup import describe_error


async def replay_into_read_models(
    units: UnitsOfWork, projection: Projection, letter: DeadLetter
) -> ReplayOutcome:
    try:
        event = decode_current_event(letter.value)
    except PoisonEvent as exc:
        return ReplayOutcome(letter, "failed", str(exc))
    try:
        typed = decode(event)
    except UnreadablePayload as exc:  # the field named, never the value (D-04)
        return ReplayOutcome(letter, "failed", f"projection failed: {describe_error(exc)}")
    try:
        applied = await apply_event(
            units, typed, projection, source_position(letter.original_headers())
        )
    except Exception as exc:
        return ReplayOutcome(letter, "failed", f"projection failed: {describe_error(exc)}")
    return ReplayOutcome(letter, "applied" if applied else "already applied")
