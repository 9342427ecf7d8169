"""The visit sub-aggregate, one per ``visit_id`` (D-01 reception journey).

Rule ids: ``D-01`` for the visit's lifecycle (a visit starts with ``visit.arrived``, nothing
follows ``visit.closed``, one open visit per client and branch, a survey names a known visit)
and ``D-01a`` for the handling order (business only after needs are confirmed and, for the
categories that need documents, after the documents were checked complete). Identity before a
contract's business is ``D-03``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from branchline_intake.domain.client import Client, check_due_diligence
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.policy import IntakePolicy
from branchline_intake.domain.violations import D01, D01A, refuse
from branchline_shared.events.catalogue import (
    FeedbackSurveyAnswered,
    VisitArrived,
    VisitBusinessHandled,
    VisitCategory,
    VisitClosed,
    VisitDocumentsChecked,
    VisitEvent,
    VisitGuidanceGiven,
    VisitNeedsConfirmed,
    VisitNextStepsExplained,
    VisitOutcome,
)


@dataclass(frozen=True, slots=True)
class Visit:
    """One visit of the client (D-01)."""

    visit_id: str
    branch_id: str | None
    arrived_at: datetime
    category: VisitCategory | None = None
    guidance_given: bool = False
    documents_complete: bool = False
    business_handled: int = 0
    next_steps_explained: bool = False
    closed_at: datetime | None = None
    outcome: VisitOutcome | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def apply(self, event: DomainEvent) -> Visit:
        """The visit after one of its events."""
        payload = event.payload
        match payload:
            case VisitNeedsConfirmed():
                return self._needs_confirmed(payload.category)
            case VisitGuidanceGiven():
                return replace(self, guidance_given=True)
            case VisitDocumentsChecked():
                return replace(self, documents_complete=payload.complete)
            case VisitBusinessHandled():
                return replace(self, business_handled=self.business_handled + 1)
            case VisitNextStepsExplained():
                return replace(self, next_steps_explained=True)
            case VisitClosed():
                return replace(self, closed_at=event.occurred_at, outcome=payload.outcome)
            case _:
                return self

    def _needs_confirmed(self, category: VisitCategory) -> Visit:
        """A changed need voids a documents check made for the previous need."""
        changed = self.category is not None and self.category is not category
        complete = self.documents_complete and not changed
        return replace(self, category=category, documents_complete=complete)


def apply_visit_event(visits: Mapping[str, Visit], event: DomainEvent) -> Mapping[str, Visit]:
    """The visits after ``event`` (a visit event); an event of an unknown visit changes nothing."""
    payload = event.payload
    if not isinstance(payload, VisitEvent):
        return visits
    if isinstance(payload, VisitArrived):
        if payload.visit_id in visits:
            return visits
        visit = Visit(payload.visit_id, event.branch_id, event.occurred_at)
        return {**visits, payload.visit_id: visit}
    current = visits.get(payload.visit_id)
    if current is None:
        return visits
    return {**visits, payload.visit_id: current.apply(event)}


# --- guards -------------------------------------------------------------------------------------


def check_visit_event(
    visits: Mapping[str, Visit], client: Client, event: DomainEvent, policy: IntakePolicy
) -> None:
    """D-01, D-01a, D-03 for one visit event."""
    payload = event.payload
    if not isinstance(payload, VisitEvent):
        return
    if isinstance(payload, VisitArrived):
        check_arrival(visits, payload, event.branch_id)
        return
    visit = check_open_visit(visits, payload)
    if isinstance(payload, VisitBusinessHandled):
        check_business_order(visit, policy)
        check_business_identity(visit, client, event.occurred_at, policy)


def check_arrival(
    visits: Mapping[str, Visit], payload: VisitArrived, branch_id: str | None
) -> None:
    """D-01: a visit id starts one visit; a client has at most one open visit per branch
    (visits without a branch, e.g. by phone, count as one more "branch")."""
    if payload.visit_id in visits:
        raise refuse(
            D01,
            "Visit already exists",
            f"visit {payload.visit_id!r} already arrived",
            field="data.visit_id",
        )
    for other in visits.values():
        if other.is_open and other.branch_id == branch_id:
            raise refuse(
                D01,
                "Client already has an open visit here",
                f"visit {other.visit_id!r} at branch {branch_id!r} is not closed yet",
                field="data.visit_id",
            )


def check_open_visit(visits: Mapping[str, Visit], payload: VisitEvent) -> Visit:
    """D-01: a step of a visit needs the visit to have arrived and not be closed."""
    visit = visits.get(payload.visit_id)
    if visit is None:
        raise refuse(
            D01,
            "Unknown visit",
            f"visit {payload.visit_id!r} has not arrived (visit.arrived comes first)",
            field="data.visit_id",
        )
    if visit.closed_at is not None:
        raise refuse(
            D01,
            "Visit already closed",
            f"visit {payload.visit_id!r} was closed at {visit.closed_at.isoformat()}",
            field="data.visit_id",
        )
    return visit


def check_business_order(visit: Visit, policy: IntakePolicy) -> None:
    """D-01a: no business before needs are confirmed; for the categories that need documents
    not before the documents were checked complete."""
    if visit.category is None:
        raise refuse(
            D01A,
            "Needs not confirmed",
            f"visit {visit.visit_id!r}: confirm the client's needs before handling business",
        )
    if visit.category in policy.documents_required_categories and not visit.documents_complete:
        raise refuse(
            D01A,
            "Documents not checked complete",
            f"visit {visit.visit_id!r}: {visit.category.value} business needs "
            "visit.documents_checked with complete true first",
        )


def check_business_identity(
    visit: Visit, client: Client, at: datetime, policy: IntakePolicy
) -> None:
    """D-03: account opening and contracts (the policy's categories) need due diligence: a
    verified identity, a clear screening, beneficial owners of a corporate client."""
    if visit.category in policy.identity_required_categories:
        check_due_diligence(client, at, policy, f"{visit.category.value} business")


def check_survey(visits: Mapping[str, Visit], payload: FeedbackSurveyAnswered) -> None:
    """D-01 (D-01b): a survey about a visit names a visit of this client."""
    if payload.visit_id is not None and payload.visit_id not in visits:
        raise refuse(
            D01,
            "Unknown visit",
            f"the survey names visit {payload.visit_id!r}, which this client never had",
            field="data.visit_id",
        )
