"""Recording a refusal (ADR-0005): the ``rule.violation_refused`` payload.

The refused submission is kept as sent, except its personal values, which are redacted (D-04:
data refused for want of consent must not be stored, not even in the record of the refusal).
"""

from __future__ import annotations

import uuid

from branchline_intake.domain.violations import RuleViolation
from branchline_shared.events.catalogue import RefusedEvent, RuleViolationRefused
from branchline_shared.events.envelope import Actor, SubmittedEvent
from branchline_shared.events.personal_data import redact_personal


def refusal_payload(
    violation: RuleViolation,
    submitted: SubmittedEvent,
    *,
    submitted_by: Actor,
    event_id: uuid.UUID | None = None,
) -> RuleViolationRefused:
    """The payload recording that ``violation`` refused ``submitted``, sent by
    ``submitted_by`` (the authenticated caller). ``event_id``: the id the refused event would
    have had, when the submission had none."""
    refused = RefusedEvent(
        event_id=submitted.event_id or event_id,
        type=submitted.type,
        occurred_at=submitted.occurred_at,
        client_id=submitted.client_id,
        product_id=submitted.product_id,
        staff_id=submitted.staff_id,
        branch_id=submitted.branch_id,
        channel=submitted.channel,
        actor=submitted.actor,
        data=redact_personal(submitted.type, submitted.data),
    )
    return RuleViolationRefused(
        rule=violation.rule,
        title=violation.title,
        detail=violation.detail,
        field=violation.field,
        refused_event=refused,
        submitted_by=submitted_by,
    )
