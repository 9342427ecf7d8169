"""What the audit trail knows of each client's relationship and legal holds (D-09, D-11).

Both are read from the ledger's own entries, never from configuration:

- the relationship ends with a ``client.account_closed`` entry and starts again with a
  ``client.account_reopened`` one; the end is the later of the closure's ``occurred_at`` and
  its ``appended_at`` (a backdated closure never makes records prunable earlier);
- a legal hold stands from its ``audit.legal_hold_placed`` entry until the
  ``audit.legal_hold_lifted`` entry with the same ``hold_id``. Who placed or lifted it is the
  entry's actor, why is its closed ``reason`` code (and ``case_reference``).

Pure: the facts come in position order; the entries that record holds are built here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from branchline_audit.domain.records import audit_event
from branchline_shared.events.catalogue import (
    AuditLegalHoldLifted,
    AuditLegalHoldPlaced,
    EventType,
    LegalHoldReason,
    LegalHoldReleaseReason,
    UnknownEventType,
    parse_payload,
)
from branchline_shared.events.sealing_keys import STAFF_KEY_PREFIX, staff_key_id

ACCOUNT_CLOSED = EventType.CLIENT_ACCOUNT_CLOSED.value
ACCOUNT_REOPENED = EventType.CLIENT_ACCOUNT_REOPENED.value
HOLD_PLACED = EventType.AUDIT_LEGAL_HOLD_PLACED.value
HOLD_LIFTED = EventType.AUDIT_LEGAL_HOLD_LIFTED.value
RELATIONSHIP_TYPES = (ACCOUNT_CLOSED, ACCOUNT_REOPENED)
HOLD_TYPES = (HOLD_PLACED, HOLD_LIFTED)


@dataclass(frozen=True)
class LedgerFact:
    """One ledger entry of a relationship or hold type (its payload may be pruned: ``data``
    is then empty)."""

    position: int
    event_type: str
    client_id: str
    occurred_at: datetime | None
    appended_at: datetime
    actor_id: str | None = None
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LegalHold:
    hold_id: str
    client_id: str
    """The held subject as the ledger's entry names it: a client's id, or a member of staff's
    key id ``#staff/<staff_id>`` (``#`` begins no client id, so the two never meet)."""
    reason: str
    case_reference: str | None
    placed_by: str | None
    placed_at: datetime
    position: int

    @property
    def staff_id(self) -> str | None:
        """The member of staff held, for a hold on one (D-04, D-11); ``None`` for a client's."""
        return staff_of_subject(self.client_id)


def hold_subject(*, client_id: str | None, staff_id: str | None) -> str:
    """The subject a hold names in the ledger (its entry's ``client_id`` column): the client,
    or a member of staff by the key id of their own texts, ``#staff/<staff_id>``: the key the
    erasure job would destroy is the thing held. Exactly one of the two is given."""
    if (client_id is None) == (staff_id is None):
        raise ValueError("a legal hold names exactly one subject: client_id or staff_id")
    return staff_key_id(staff_id) if staff_id is not None else str(client_id)


def staff_of_subject(subject: str) -> str | None:
    """The member of staff a hold's subject names, if it names one."""
    return subject[len(STAFF_KEY_PREFIX) :] if subject.startswith(STAFF_KEY_PREFIX) else None


def relationship_ends(facts: Iterable[LedgerFact]) -> dict[str, datetime]:
    """Client → when their relationship ended, for clients whose latest relationship entry is
    a closure (a client absent from the result is still a client: never prunable)."""
    ends: dict[str, datetime] = {}
    for fact in sorted(facts, key=lambda f: f.position):
        if fact.event_type == ACCOUNT_CLOSED:
            moment = fact.appended_at
            if fact.occurred_at is not None and fact.occurred_at > moment:
                moment = fact.occurred_at
            ends[fact.client_id] = moment
        elif fact.event_type == ACCOUNT_REOPENED:
            ends.pop(fact.client_id, None)
    return ends


def standing_holds(facts: Iterable[LedgerFact]) -> dict[str, LegalHold]:
    """Hold id → the legal holds placed and not lifted."""
    holds: dict[str, LegalHold] = {}
    for fact in sorted(facts, key=lambda f: f.position):
        payload = _hold_payload(fact)
        if isinstance(payload, AuditLegalHoldPlaced):
            holds.setdefault(
                payload.hold_id,
                LegalHold(
                    hold_id=payload.hold_id,
                    client_id=fact.client_id,
                    reason=payload.reason.value,
                    case_reference=payload.case_reference,
                    placed_by=fact.actor_id,
                    placed_at=fact.appended_at,
                    position=fact.position,
                ),
            )
        elif isinstance(payload, AuditLegalHoldLifted):
            holds.pop(payload.hold_id, None)
    return holds


def _hold_payload(fact: LedgerFact) -> AuditLegalHoldPlaced | AuditLegalHoldLifted | None:
    """The typed payload of a hold entry; ``None`` for a pruned or unreadable one (it names
    no hold, so it neither places nor lifts one)."""
    if not fact.data or fact.event_type not in HOLD_TYPES:
        return None
    try:
        payload = parse_payload(fact.event_type, fact.data, stored=True)
    except (ValidationError, UnknownEventType):
        return None
    return payload if isinstance(payload, AuditLegalHoldPlaced | AuditLegalHoldLifted) else None


def held_clients(holds: Mapping[str, LegalHold]) -> frozenset[str]:
    return frozenset(h.client_id for h in holds.values())


class HoldRefusal(StrEnum):
    """Why a hold cannot be placed or lifted."""

    ALREADY_STANDS = "already-stands"
    NOT_STANDING = "not-standing"


class HoldRefused(ValueError):
    """A hold that cannot be placed or lifted (rule D-11)."""

    rule = "D-11"

    def __init__(self, detail: str, *, reason: HoldRefusal) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


def hold_placed_event(
    *,
    now: datetime,
    actor_id: str,
    actor_role: str,
    client_id: str,
    hold_id: str,
    reason: str,
    case_reference: str | None,
    holds: Mapping[str, LegalHold],
) -> dict[str, Any]:
    """The ``audit.legal_hold_placed`` entry; refused when ``hold_id`` already stands."""
    if hold_id in holds:
        raise HoldRefused(
            f"legal hold {hold_id} already stands for {holds[hold_id].client_id}",
            reason=HoldRefusal.ALREADY_STANDS,
        )
    placed = AuditLegalHoldPlaced(
        hold_id=hold_id, reason=LegalHoldReason(reason), case_reference=case_reference
    )
    data = placed.model_dump(mode="json", exclude_none=True)
    return audit_event(
        event_type=HOLD_PLACED,
        now=now,
        actor_id=actor_id,
        actor_role=actor_role,
        client_id=client_id,
        data=data,
        event_id=uuid.uuid4(),
    )


def hold_lifted_event(
    *,
    now: datetime,
    actor_id: str,
    actor_role: str,
    hold_id: str,
    reason: str,
    holds: Mapping[str, LegalHold],
) -> dict[str, Any]:
    """The ``audit.legal_hold_lifted`` entry; refused unless ``hold_id`` stands."""
    hold = holds.get(hold_id)
    if hold is None:
        raise HoldRefused(f"no standing legal hold {hold_id}", reason=HoldRefusal.NOT_STANDING)
    return audit_event(
        event_type=HOLD_LIFTED,
        now=now,
        actor_id=actor_id,
        actor_role=actor_role,
        client_id=hold.client_id,
        data=AuditLegalHoldLifted(
            hold_id=hold_id, reason=LegalHoldReleaseReason(reason)
        ).model_dump(mode="json", exclude_none=True),
        event_id=uuid.uuid4(),
    )
