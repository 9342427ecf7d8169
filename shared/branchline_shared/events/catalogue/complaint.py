"""Complaint events (D-07, D-17)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import (
    Field,
    StrictBool,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    ComplaintEvent,
    PayloadPart,
)
from branchline_shared.events.catalogue.checks import client_was_told
from branchline_shared.events.catalogue.scalars import (
    Label,
    Note,
    Text,
)
from branchline_shared.events.envelope import Channel, Identifier
from branchline_shared.events.vocabulary import (
    CompensationKind,
    ComplaintProblem,
    ComplaintSeverity,
    CorrectiveActionKind,
    ProductCategory,
    RenegotiationReason,
    RootCause,
)


class ComplaintReceived(ComplaintEvent):
    """complaint.received (D-07): details recorded. ``topic`` classifies the complaint; the
    followup service escalates the topic ``personal_data`` (personal-data protection) to the
    RM's supervisor. ``complex`` selects the longer decision clock of profiles that have one."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("summary",)

    severity: ComplaintSeverity
    summary: Text
    topic: Identifier | None = None
    complex: StrictBool = False
    visit_id: Identifier | None = None
    problem: ComplaintProblem | None = None
    """D-17: what the complaint is about (regulatory statistics by problem code)."""
    product_id: Identifier | None = None
    product_category: ProductCategory | None = None
    """D-17: the product complained about (regulatory statistics by product code)."""


class ComplaintAcknowledged(ComplaintEvent):
    """complaint.acknowledged (D-07): apology made, owner assigned."""

    owner_id: Identifier
    due_at: Instant | None = None


class ComplaintProgressReported(ComplaintEvent):
    """complaint.progress_reported (D-07 "investigating"): progress communicated; ``complex``
    true when the investigation found the case complex (a longer decision clock may apply)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    note: Note
    complex: StrictBool = False
    next_update_by: Instant | None = None
    """D-17: the client was promised the next update by then (a promise tracked to kept)."""


class Compensation(PayloadPart):
    """D-07: optional compensation of a resolution."""

    kind: CompensationKind
    value: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=4)]
    description: Label | None = None


class ComplaintResolved(ComplaintEvent):
    """complaint.resolved (D-07)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("resolution", "compensation.description")

    resolution: Text
    compensation: Compensation | None = None
    root_cause: RootCause | None = None
    """D-17: the root cause found (complaint analysis by root cause)."""


class ComplaintConfirmedByClient(ComplaintEvent):
    """complaint.confirmed_by_client (D-07): the client's answer to the resolution."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    satisfied: StrictBool
    note: Note | None = None


class ComplaintClosed(ComplaintEvent):
    """complaint.closed (D-07): only after a resolution and the client's confirmation."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    note: Note | None = None


class ComplaintPromiseRenegotiated(ComplaintEvent):
    """complaint.promise_renegotiated (D-17): the promised progress update cannot be given by
    its deadline; before it passes the client is told, with a reason and an alternative, and a
    new deadline ``promised_by`` is agreed."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("alternative",)

    promised_by: Instant
    reason: RenegotiationReason
    alternative: Note
    client_told: StrictBool
    told_via: Channel | None = None

    _told = client_was_told()


class ComplaintCorrectiveActionPlanned(ComplaintEvent):
    """complaint.corrective_action_planned (D-17): a corrective action against the complaint's
    root cause, with an owner and a deadline; tracked to done as a task of the owner."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("description",)

    action_id: Identifier
    root_cause: RootCause
    action_kind: CorrectiveActionKind
    owner_id: Identifier
    due_at: Instant
    description: Note | None = None


class ComplaintCorrectiveActionCompleted(ComplaintEvent):
    """complaint.corrective_action_completed (D-17): the corrective action is done."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    action_id: Identifier
    note: Note | None = None
