"""Legal holds, recorded by the audit service (D-11)."""

from __future__ import annotations

from branchline_shared.events.catalogue.base import (
    EventPayload,
)
from branchline_shared.events.envelope import Identifier
from branchline_shared.events.vocabulary import (
    LegalHoldReason,
    LegalHoldReleaseReason,
)


class AuditLegalHoldPlaced(EventPayload):
    """audit.legal_hold_placed (D-11; recorded by the audit service for an auditor or admin,
    who is the envelope's actor): none of the client's records is pruned while the hold
    stands."""

    hold_id: Identifier
    reason: LegalHoldReason
    case_reference: Identifier | None = None


class AuditLegalHoldLifted(EventPayload):
    """audit.legal_hold_lifted (D-11): the hold ``hold_id`` no longer stands."""

    hold_id: Identifier
    reason: LegalHoldReleaseReason
