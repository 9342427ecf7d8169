"""Legal holds placed and lifted by recorded decisions (D-11): each is an entry of the ledger
(``audit.legal_hold_placed`` / ``audit.legal_hold_lifted``) with who (the actor) and why (a
closed reason code, a case reference), never a configuration list. Checked and appended under
the ledger's lock (``AuditLedger.append_decided``), so two auditors cannot both place the
same hold or lift one twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from branchline_audit.application.ports import AuditLedger
from branchline_audit.domain.relationships import (
    HOLD_TYPES,
    LedgerFact,
    LegalHold,
    hold_lifted_event,
    hold_placed_event,
    standing_holds,
)
from branchline_shared.clock import Clock


@dataclass(frozen=True)
class HoldActor:
    id: str
    role: str


async def place_hold(
    ledger: AuditLedger,
    clock: Clock,
    *,
    actor: HoldActor,
    client_id: str,
    hold_id: str,
    reason: str,
    case_reference: str | None = None,
) -> tuple[LegalHold, int]:
    """Record a hold; the hold and its ledger position. Raises HoldRefused."""
    now = clock.now()

    def decide(facts: list[LedgerFact]) -> dict[str, Any]:
        return hold_placed_event(
            now=now,
            actor_id=actor.id,
            actor_role=actor.role,
            client_id=client_id,
            hold_id=hold_id,
            reason=reason,
            case_reference=case_reference,
            holds=standing_holds(facts),
        )

    position = await ledger.append_decided(HOLD_TYPES, decide, now=now)
    return (
        LegalHold(
            hold_id=hold_id,
            client_id=client_id,
            reason=reason,
            case_reference=case_reference,
            placed_by=actor.id,
            placed_at=now,
            position=position,
        ),
        position,
    )


async def lift_hold(
    ledger: AuditLedger, clock: Clock, *, actor: HoldActor, hold_id: str, reason: str
) -> tuple[LegalHold, int]:
    """Record the lifting of a standing hold; the hold as it stood and the new position."""
    now = clock.now()
    holds: dict[str, LegalHold] = {}

    def decide(facts: list[LedgerFact]) -> dict[str, Any]:
        holds.update(standing_holds(facts))
        return hold_lifted_event(
            now=now,
            actor_id=actor.id,
            actor_role=actor.role,
            hold_id=hold_id,
            reason=reason,
            holds=holds,
        )

    position = await ledger.append_decided(HOLD_TYPES, decide, now=now)
    return holds[hold_id], position


async def list_holds(ledger: AuditLedger, client_id: str | None = None) -> list[LegalHold]:
    """The standing holds (of ``client_id``), oldest first."""
    holds = standing_holds(await ledger.facts(HOLD_TYPES, client_id))
    return sorted(holds.values(), key=lambda h: h.position)
