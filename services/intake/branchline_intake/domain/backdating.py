"""No backdating (D-05b): rules decide as of ``occurred_at``, so it is bounded.

``occurred_at`` may lie at most the clock skew (default 5 minutes) after the time intake
received the event, and at most the late-entry window (default 24 hours) before it, unless the
event is flagged as a late entry (补录) with a reason. A late sale, recommendation or contract
(terms confirmation) also needs a supervisor's ``client.late_entry_approved`` naming its event
id, recorded before it. The stored event keeps both times (``occurred_at``, ``recorded_at``)
and the late-entry reason; a sale also names the approval in its as-of proof.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from branchline_intake.domain.due_diligence import LateEntryApproval
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.policy import IntakePolicy
from branchline_intake.domain.violations import D05B, refuse
from branchline_shared.events.catalogue import (
    ProductRecommended,
    ProductSold,
    ProductTermsConfirmed,
)

APPROVAL_NEEDED = (ProductRecommended, ProductSold, ProductTermsConfirmed)
"""A late entry of these needs a supervisor's approval: a recommendation, a sale, a contract."""


def check_timing(
    event: DomainEvent,
    policy: IntakePolicy,
    approvals: Mapping[uuid.UUID, LateEntryApproval] | None = None,
) -> LateEntryApproval | None:
    """D-05b for a candidate; returns the approval a late entry relied on, if one was needed.
    An event without a receipt time (a rule evaluated outside the write path) is not bounded."""
    received = event.received_at
    if received is None:
        return None
    occurred = event.occurred_at
    if occurred > received + policy.clock_skew:
        raise refuse(
            D05B,
            "Event dated in the future",
            f"occurred_at {occurred.isoformat()} is more than {policy.clock_skew} after its "
            f"receipt at {received.isoformat()}",
            field="occurred_at",
        )
    if occurred >= received - policy.late_entry_window:
        return None
    late_by = received - occurred
    if event.late_entry_reason is None:
        raise refuse(
            D05B,
            "Late entry not flagged",
            f"occurred_at {occurred.isoformat()} is {late_by} before its receipt at "
            f"{received.isoformat()}, beyond the late-entry window of "
            f"{policy.late_entry_window}: flag it with late_entry {{reason}}",
            field="late_entry",
        )
    if not isinstance(event.payload, APPROVAL_NEEDED):
        return None
    approval = (approvals or {}).get(event.event_id)
    if approval is None:
        raise refuse(
            D05B,
            "Late entry not approved",
            f"the late {event.type} {event.event_id} needs a supervisor's "
            "client.late_entry_approved naming its event_id first",
            field="late_entry",
        )
    return approval
