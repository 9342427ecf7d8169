"""rule.violation_refused (ADR-0005): the record of a refused submission."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar

from pydantic import (
    StringConstraints,
)

from branchline_shared.events.bounded import CleanText, CleanToken, Instant
from branchline_shared.events.catalogue.base import (
    EventPayload,
    PayloadPart,
)
from branchline_shared.events.catalogue.scalars import (
    Label,
    RuleId,
    Text,
)
from branchline_shared.events.envelope import Actor, Channel, Identifier


class RefusedEvent(PayloadPart):
    """The refused submission, as sent; its personal paths are redacted (D-04: data refused
    for want of consent must not be stored)."""

    event_id: uuid.UUID | None = None
    type: Annotated[str, StringConstraints(min_length=3, max_length=64), CleanToken]
    occurred_at: Instant
    client_id: Identifier | None = None
    product_id: Identifier | None = None
    staff_id: Identifier | None = None
    branch_id: Identifier | None = None
    channel: Channel | None = None
    actor: Actor
    data: dict[str, Any]


class RuleViolationRefused(EventPayload):
    """rule.violation_refused (ADR-0005): a rule refused a submission; the
    refusal itself is recorded (e.g. a recommendation above tolerance, D-05)."""

    SYSTEM_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("title", "detail", "field")

    rule: RuleId
    title: Label
    detail: Text
    field: Annotated[str, StringConstraints(max_length=200), CleanText] | None = None
    refused_event: RefusedEvent
    submitted_by: Actor
