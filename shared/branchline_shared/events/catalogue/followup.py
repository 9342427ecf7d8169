"""Follow-up task events, emitted by the followup service (D-01b, D-02, D-06, D-07, D-08)."""

from __future__ import annotations

import uuid
from typing import Annotated, ClassVar

from pydantic import (
    Field,
    StrictBool,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    FollowupTaskEvent,
)
from branchline_shared.events.catalogue.feedback import SatisfactionScores
from branchline_shared.events.catalogue.scalars import (
    Label,
    Note,
    RuleId,
)
from branchline_shared.events.envelope import Identifier
from branchline_shared.events.vocabulary import (
    FollowupKind,
    FollowupOutcome,
)


class FollowupTaskCreated(FollowupTaskEvent):
    """followup.task_created: a task with its deadline, as computed by the profile in force
    (stored, so changing a profile never rewrites history, D-07)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    kind: FollowupKind
    assignee: Identifier
    due_at: Instant
    rule: RuleId
    source_event_id: uuid.UUID | None = None
    subject_id: Identifier | None = None
    """The visit, appointment, consultation, complaint or product the task is about."""
    profile: Identifier | None = None
    escalate_at: Instant | None = None
    note: Note | None = None
    holdings: Annotated[tuple[Identifier, ...], Field(max_length=200)] = ()
    """D-15: the products held that no longer fit (a suitability review)."""


class FollowupCompleted(FollowupTaskEvent):
    """followup.completed: the outcome (a closed code; the RM's own words go into the sealed
    ``note``), and for a revisit the next date (D-08); for a survey task the scores (D-10).
    ``kind``: the completed task's kind. v2: ``outcome`` became a code (v1 free text is read
    as ``other``)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    outcome: FollowupOutcome
    kind: FollowupKind | None = None
    note: Note | None = None
    next_contact_at: Instant | None = None
    scores: SatisfactionScores | None = None
    client_warned: StrictBool | None = None
    """D-15: the client was warned (风险提示) that a holding no longer fits."""


class FollowupReassigned(FollowupTaskEvent):
    """followup.reassigned (by a supervisor)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    from_assignee: Identifier
    to_assignee: Identifier
    reason: Label | None = None


class FollowupOverdue(FollowupTaskEvent):
    """followup.overdue: the deadline passed without completion."""

    due_at: Instant


class FollowupEscalated(FollowupTaskEvent):
    """followup.escalated: an overdue task escalated to the RM's supervisor (D-08)."""

    SYSTEM_TEXT_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    supervisor_id: Identifier
    reason: Label | None = None
