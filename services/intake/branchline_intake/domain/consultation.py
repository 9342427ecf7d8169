"""The consultation sub-aggregate, one per ``consultation_id`` (D-06).

opened → answered; or opened → promised (a deadline for a question that cannot be answered at
once) → … → answered. Nothing follows the answer. Refusals carry ``D-06``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.violations import D06, D17, refuse
from branchline_shared.events.catalogue import (
    ConsultationAnswered,
    ConsultationEvent,
    ConsultationOpened,
    ConsultationPromiseRenegotiated,
)
from branchline_shared.events.envelope import Channel


class ConsultationStatus(StrEnum):
    OPEN = "open"
    PROMISED = "promised"
    ANSWERED = "answered"


@dataclass(frozen=True, slots=True)
class Consultation:
    """One question of the client (D-06)."""

    consultation_id: str
    channel: Channel
    opened_at: datetime
    status: ConsultationStatus = ConsultationStatus.OPEN
    promised_by: datetime | None = None
    answered_at: datetime | None = None

    def apply(self, event: DomainEvent) -> Consultation:
        payload = event.payload
        if isinstance(payload, ConsultationPromiseRenegotiated):
            return replace(self, promised_by=payload.promised_by)
        if not isinstance(payload, ConsultationAnswered):
            return self
        if payload.answer is not None:
            return replace(self, status=ConsultationStatus.ANSWERED, answered_at=event.occurred_at)
        return replace(self, status=ConsultationStatus.PROMISED, promised_by=payload.promised_by)


def apply_consultation_event(
    consultations: Mapping[str, Consultation], event: DomainEvent
) -> Mapping[str, Consultation]:
    """The consultations after ``event``."""
    payload = event.payload
    if isinstance(payload, ConsultationOpened):
        if payload.consultation_id in consultations:
            return consultations
        opened = Consultation(payload.consultation_id, payload.channel, event.occurred_at)
        return {**consultations, payload.consultation_id: opened}
    if not isinstance(payload, ConsultationEvent):
        return consultations
    current = consultations.get(payload.consultation_id)
    if current is None:
        return consultations
    return {**consultations, payload.consultation_id: current.apply(event)}


def check_consultation_event(consultations: Mapping[str, Consultation], event: DomainEvent) -> None:
    """D-06: one opening per id; answers and promises follow an open question; a promised
    deadline lies in the future of the promise; nothing follows the answer."""
    payload = event.payload
    if not isinstance(payload, ConsultationEvent):
        return
    current = consultations.get(payload.consultation_id)
    if isinstance(payload, ConsultationOpened):
        if current is not None:
            raise refuse(
                D06,
                "Consultation already opened",
                f"consultation {payload.consultation_id!r} exists",
                field="data.consultation_id",
            )
        return
    if current is None:
        raise refuse(
            D06,
            "Unknown consultation",
            f"consultation {payload.consultation_id!r} was never opened",
            field="data.consultation_id",
        )
    if current.status is ConsultationStatus.ANSWERED:
        raise refuse(
            D06,
            "Consultation already answered",
            f"consultation {payload.consultation_id!r} was answered",
            field="data.consultation_id",
        )
    if isinstance(payload, ConsultationAnswered):
        check_promise(payload, event.occurred_at)
    elif isinstance(payload, ConsultationPromiseRenegotiated):
        check_renegotiation(current, payload, event.occurred_at)


def check_renegotiation(
    consultation: Consultation, payload: ConsultationPromiseRenegotiated, at: datetime
) -> None:
    """D-17: a promised answer is renegotiated before its deadline, to a later one."""
    promised = consultation.promised_by
    where = f"consultation {consultation.consultation_id!r}"
    if consultation.status is not ConsultationStatus.PROMISED or promised is None:
        raise refuse(
            D17,
            "No open promise",
            f"{where} has no promised answer to renegotiate",
            field="data.consultation_id",
        )
    if at >= promised:
        raise refuse(
            D17,
            "Promise already missed",
            f"{where}: the answer promised by {promised.isoformat()} was due before "
            f"{at.isoformat()}; a promise is renegotiated before its deadline",
        )
    if payload.promised_by <= at:
        raise refuse(
            D17,
            "New deadline in the past",
            f"promised_by {payload.promised_by.isoformat()} is not after {at.isoformat()}",
            field="data.promised_by",
        )


def check_promise(payload: ConsultationAnswered, at: datetime) -> None:
    """D-06: a promised deadline must lie after the promise."""
    if payload.answer is None and payload.promised_by is not None and payload.promised_by <= at:
        raise refuse(
            D06,
            "Promised deadline in the past",
            f"promised_by {payload.promised_by.isoformat()} is not after {at.isoformat()}",
            field="data.promised_by",
        )
