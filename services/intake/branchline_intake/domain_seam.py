"""Chooses the decider that enforces the standard on the write path."""

from __future__ import annotations

from collections.abc import Sequence

from branchline_intake.application.deciding import Decider, Violation
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.settings import BranchlineSettings


def _registration_only(
    history: Sequence[RecordedEvent], candidate: RecordedEvent
) -> RecordedEvent | Violation:
    if candidate.type == "client.registered" and any(
        e.type == "client.registered" for e in history
    ):
        return Violation(
            "D-09",
            "Client already registered",
            f"client {candidate.client_id} is already registered",
        )
    return candidate


def build_decider(settings: BranchlineSettings) -> Decider:
    return _registration_only
