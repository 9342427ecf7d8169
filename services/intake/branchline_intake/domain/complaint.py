"""The complaint sub-aggregate, one per ``complaint_id`` (D-07 closed loop).

received → acknowledged → progress_reported (0..n) → resolved → confirmed_by_client → closed.
A client who confirms *unsatisfied* reopens the work: more progress and a new resolution may
follow, or the complaint is closed with the dissatisfaction on record (a final response).
Refusals carry ``D-07``.

D-17 (improvement loop, promises kept): a progress report may promise the next update by a
deadline (``next_update_by``); that promise is renegotiated only before it passes and only
while the complaint is open (``complaint.promise_renegotiated``). Corrective actions are
planned once per ``action_id`` (also after the complaint closed: the improvement outlives the
case) and completed once. These refusals carry ``D-17``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.violations import D07, D17, refuse
from branchline_shared.events.catalogue import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintConfirmedByClient,
    ComplaintCorrectiveActionCompleted,
    ComplaintCorrectiveActionPlanned,
    ComplaintEvent,
    ComplaintProgressReported,
    ComplaintPromiseRenegotiated,
    ComplaintReceived,
    ComplaintResolved,
    ComplaintSeverity,
    EventType,
)


class ComplaintStatus(StrEnum):
    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    RESOLVED = "resolved"
    CONFIRMED = "confirmed"
    CLOSED = "closed"


_S = ComplaintStatus
_REWORKABLE = frozenset({_S.ACKNOWLEDGED, _S.INVESTIGATING})
"""Statuses from which progress may be reported or a resolution given."""

_NEXT_STATUS: Mapping[type[ComplaintEvent], ComplaintStatus] = {
    ComplaintAcknowledged: _S.ACKNOWLEDGED,
    ComplaintProgressReported: _S.INVESTIGATING,
    ComplaintResolved: _S.RESOLVED,
    ComplaintConfirmedByClient: _S.CONFIRMED,
    ComplaintClosed: _S.CLOSED,
}


@dataclass(frozen=True, slots=True)
class Complaint:
    """One complaint of the client (D-07)."""

    complaint_id: str
    severity: ComplaintSeverity
    received_at: datetime
    status: ComplaintStatus = ComplaintStatus.RECEIVED
    owner_id: str | None = None
    resolutions: int = 0
    satisfied: bool | None = None
    """The client's answer to the latest resolution (None until they confirm)."""
    closed_at: datetime | None = None
    update_promised_by: datetime | None = None
    """D-17: the open promise of the next progress update (None when none is pending)."""
    actions_planned: frozenset[str] = frozenset()
    actions_done: frozenset[str] = frozenset()

    def apply(self, event: DomainEvent) -> Complaint:
        payload = event.payload
        match payload:
            case ComplaintPromiseRenegotiated():
                return replace(self, update_promised_by=payload.promised_by)
            case ComplaintCorrectiveActionPlanned():
                return replace(self, actions_planned=self.actions_planned | {payload.action_id})
            case ComplaintCorrectiveActionCompleted():
                return replace(self, actions_done=self.actions_done | {payload.action_id})
            case _:
                pass
        if not isinstance(payload, ComplaintEvent) or type(payload) not in _NEXT_STATUS:
            return self
        status = _NEXT_STATUS[type(payload)]
        match payload:
            case ComplaintAcknowledged():
                return replace(self, status=status, owner_id=payload.owner_id)
            case ComplaintProgressReported():
                # any update keeps the previous promise; a new one may be made
                return replace(self, status=status, update_promised_by=payload.next_update_by)
            case ComplaintResolved():
                return replace(
                    self,
                    status=status,
                    resolutions=self.resolutions + 1,
                    satisfied=None,
                    update_promised_by=None,
                )
            case ComplaintConfirmedByClient():
                return replace(self, status=status, satisfied=payload.satisfied)
            case ComplaintClosed():
                return replace(
                    self, status=status, closed_at=event.occurred_at, update_promised_by=None
                )
            case _:
                return replace(self, status=status)

    def allows(self, payload: ComplaintEvent) -> bool:
        """D-07: whether ``payload`` may follow in the complaint's current status."""
        status = self.status
        reopened = status is _S.CONFIRMED and self.satisfied is False
        match payload:
            case ComplaintAcknowledged():
                return status is _S.RECEIVED
            case ComplaintProgressReported() | ComplaintResolved():
                return status in _REWORKABLE or reopened
            case ComplaintConfirmedByClient():
                return status is _S.RESOLVED
            case ComplaintClosed():
                return status is _S.CONFIRMED
            case _:
                return False


def apply_complaint_event(
    complaints: Mapping[str, Complaint], event: DomainEvent
) -> Mapping[str, Complaint]:
    """The complaints after ``event``."""
    payload = event.payload
    if isinstance(payload, ComplaintReceived):
        if payload.complaint_id in complaints:
            return complaints
        received = Complaint(payload.complaint_id, payload.severity, event.occurred_at)
        return {**complaints, payload.complaint_id: received}
    if not isinstance(payload, ComplaintEvent):
        return complaints
    current = complaints.get(payload.complaint_id)
    if current is None:
        return complaints
    return {**complaints, payload.complaint_id: current.apply(event)}


def check_complaint_event(complaints: Mapping[str, Complaint], event: DomainEvent) -> None:
    """D-07: one receipt per complaint id; every later step in the closed-loop order."""
    payload = event.payload
    if not isinstance(payload, ComplaintEvent):
        return
    current = complaints.get(payload.complaint_id)
    if isinstance(payload, ComplaintReceived):
        if current is not None:
            raise refuse(
                D07,
                "Complaint already received",
                f"complaint {payload.complaint_id!r} exists ({current.status.value})",
                field="data.complaint_id",
            )
        return
    if current is None:
        raise refuse(
            D07,
            "Unknown complaint",
            f"complaint {payload.complaint_id!r} was never received",
            field="data.complaint_id",
        )
    match payload:
        case ComplaintPromiseRenegotiated():
            check_renegotiation(current, payload, event.occurred_at)
            return
        case ComplaintCorrectiveActionPlanned() | ComplaintCorrectiveActionCompleted():
            check_corrective_action(current, payload, event.occurred_at)
            return
        case _:
            pass
    if not current.allows(payload):
        raise refuse(D07, *_out_of_order(current, event.type))
    promised = payload.next_update_by if isinstance(payload, ComplaintProgressReported) else None
    if promised is not None and promised <= event.occurred_at:
        raise refuse(
            D17,
            "Promised update in the past",
            f"next_update_by {promised.isoformat()} is not after {event.occurred_at.isoformat()}",
            field="data.next_update_by",
        )


def check_renegotiation(
    complaint: Complaint, payload: ComplaintPromiseRenegotiated, at: datetime
) -> None:
    """D-17: only an open promise is renegotiated, before its deadline, to a later one."""
    where = f"complaint {complaint.complaint_id!r}"
    promised = complaint.update_promised_by
    if complaint.status is _S.CLOSED or promised is None:
        raise refuse(
            D17,
            "No open promise",
            f"{where} has no promised progress update to renegotiate",
            field="data.complaint_id",
        )
    if at >= promised:
        raise refuse(
            D17,
            "Promise already missed",
            f"{where}: the update promised by {promised.isoformat()} was due before "
            f"{at.isoformat()}; a promise is renegotiated before its deadline",
        )
    if payload.promised_by <= at:
        raise refuse(
            D17,
            "New deadline in the past",
            f"promised_by {payload.promised_by.isoformat()} is not after {at.isoformat()}",
            field="data.promised_by",
        )


def check_corrective_action(
    complaint: Complaint,
    payload: ComplaintCorrectiveActionPlanned | ComplaintCorrectiveActionCompleted,
    at: datetime,
) -> None:
    """D-17: an action is planned once (with a future deadline) and completed once."""
    action = payload.action_id
    if isinstance(payload, ComplaintCorrectiveActionPlanned):
        if action in complaint.actions_planned:
            raise refuse(
                D17,
                "Corrective action already planned",
                f"action {action!r} of complaint {complaint.complaint_id!r} exists",
                field="data.action_id",
            )
        if payload.due_at <= at:
            raise refuse(
                D17,
                "Corrective action deadline in the past",
                f"due_at {payload.due_at.isoformat()} is not after {at.isoformat()}",
                field="data.due_at",
            )
        return
    if action not in complaint.actions_planned:
        raise refuse(
            D17,
            "Unknown corrective action",
            f"action {action!r} was never planned for complaint {complaint.complaint_id!r}",
            field="data.action_id",
        )
    if action in complaint.actions_done:
        raise refuse(
            D17,
            "Corrective action already completed",
            f"action {action!r} of complaint {complaint.complaint_id!r} is done",
            field="data.action_id",
        )


def _out_of_order(complaint: Complaint, event_type: str) -> tuple[str, str]:
    """Title and detail of a step out of the closed-loop order."""
    where = f"complaint {complaint.complaint_id!r} is {complaint.status.value}"
    if complaint.status is _S.CLOSED:
        return "Complaint already closed", f"{where}: nothing may follow"
    if event_type == EventType.COMPLAINT_CLOSED:
        if complaint.status is _S.RESOLVED:
            return "Client has not confirmed", f"{where}: the client's confirmation comes first"
        return (
            "Complaint not resolved",
            f"{where}: a resolution and the client's confirmation come first",
        )
    return "Complaint step out of order", f"{where}: {event_type} cannot follow"
