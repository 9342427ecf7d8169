"""Visit events (D-01: the seven steps of a branch visit)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import (
    Field,
    StrictBool,
    model_validator,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    VisitEvent,
)
from branchline_shared.events.catalogue.checks import times_in_order
from branchline_shared.events.catalogue.scalars import (
    Label,
    Note,
)
from branchline_shared.events.envelope import Identifier
from branchline_shared.events.vocabulary import (
    VisitCategory,
    VisitOutcome,
)


class VisitArrived(VisitEvent):
    """visit.arrived (D-01 step 1); the channel and branch are in the envelope."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("ticket",)

    ticket: Label | None = None
    appointment_id: Identifier | None = None


class VisitNeedsConfirmed(VisitEvent):
    """visit.needs_confirmed (D-01 step 2)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    category: VisitCategory
    note: Note | None = None


class VisitGuidanceGiven(VisitEvent):
    """visit.guidance_given (D-01 step 3): process and required materials explained."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("materials", "note")

    materials: tuple[Label, ...] = ()
    note: Note | None = None


class VisitDocumentsChecked(VisitEvent):
    """visit.documents_checked (D-01 step 4): incomplete lists what is missing (the client must
    be told what to bring); complete lists nothing."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("missing",)

    complete: StrictBool
    missing: Annotated[tuple[Label, ...], Field(max_length=50)] = ()

    @model_validator(mode="after")
    def _missing_matches_complete(self) -> VisitDocumentsChecked:
        if self.complete and self.missing:
            raise ValueError("missing must be empty when complete is true")
        if not self.complete and not self.missing:
            raise ValueError("missing must list the missing items when complete is false")
        return self


class VisitBusinessHandled(VisitEvent):
    """visit.business_handled (D-01 step 5): waiting and handling time are measured (D-12)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("counter",)

    counter: Label
    started_at: Instant
    ended_at: Instant

    _ended_after_start = times_in_order("started_at", "ended_at", strictly=False)


class VisitNextStepsExplained(VisitEvent):
    """visit.next_steps_explained (D-01 step 6)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    note: Note | None = None


class VisitClosed(VisitEvent):
    """visit.closed (D-01 step 7): an early end states its reason. A satisfaction survey is
    due afterwards (D-01b)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    outcome: VisitOutcome
    reason: Label | None = None

    @model_validator(mode="after")
    def _early_end_has_reason(self) -> VisitClosed:
        if self.outcome is not VisitOutcome.NORMAL and self.reason is None:
            raise ValueError(f"reason is required when outcome is {self.outcome.value}")
        return self
