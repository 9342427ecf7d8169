"""The appointment sub-aggregate, one per ``appointment_id`` (D-02).

booked → confirmed → attended | no_show | cancelled; a booking may also be cancelled before it
is confirmed. Every other transition is refused with ``D-02``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.violations import D02, refuse
from branchline_shared.events.catalogue import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentConfirmed,
    AppointmentEvent,
    AppointmentNoShow,
)


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CONFIRMED = "confirmed"
    ATTENDED = "attended"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


_TRANSITIONS: Mapping[
    type[AppointmentEvent], tuple[frozenset[AppointmentStatus], AppointmentStatus]
]
_TRANSITIONS = {
    AppointmentConfirmed: (frozenset({AppointmentStatus.BOOKED}), AppointmentStatus.CONFIRMED),
    AppointmentCancelled: (
        frozenset({AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED}),
        AppointmentStatus.CANCELLED,
    ),
    AppointmentAttended: (frozenset({AppointmentStatus.CONFIRMED}), AppointmentStatus.ATTENDED),
    AppointmentNoShow: (frozenset({AppointmentStatus.CONFIRMED}), AppointmentStatus.NO_SHOW),
}
"""Event → (the statuses it may follow, the status it leads to)."""


@dataclass(frozen=True, slots=True)
class Appointment:
    """One booked appointment (D-02)."""

    appointment_id: str
    status: AppointmentStatus
    slot_start: datetime
    staff_id: str
    booked_at: datetime


def apply_appointment_event(
    appointments: Mapping[str, Appointment], event: DomainEvent
) -> Mapping[str, Appointment]:
    """The appointments after ``event``; a transition of an unknown appointment changes nothing."""
    payload = event.payload
    if isinstance(payload, AppointmentBooked):
        if payload.appointment_id in appointments:
            return appointments
        booked = Appointment(
            payload.appointment_id,
            AppointmentStatus.BOOKED,
            payload.slot_start,
            payload.staff_id,
            event.occurred_at,
        )
        return {**appointments, payload.appointment_id: booked}
    if not isinstance(payload, AppointmentEvent) or type(payload) not in _TRANSITIONS:
        return appointments
    current = appointments.get(payload.appointment_id)
    if current is None:
        return appointments
    target = _TRANSITIONS[type(payload)][1]
    return {**appointments, payload.appointment_id: replace(current, status=target)}


def check_appointment_event(appointments: Mapping[str, Appointment], event: DomainEvent) -> None:
    """D-02: a booking id is booked once; every later step follows the allowed transitions."""
    payload = event.payload
    if not isinstance(payload, AppointmentEvent):
        return
    current = appointments.get(payload.appointment_id)
    if isinstance(payload, AppointmentBooked):
        if current is not None:
            raise refuse(
                D02,
                "Appointment already booked",
                f"appointment {payload.appointment_id!r} exists ({current.status.value})",
                field="data.appointment_id",
            )
        return
    if current is None:
        raise refuse(
            D02,
            "Unknown appointment",
            f"appointment {payload.appointment_id!r} was never booked",
            field="data.appointment_id",
        )
    allowed_from, target = _TRANSITIONS[type(payload)]
    if current.status not in allowed_from:
        raise refuse(
            D02,
            "Appointment transition not allowed",
            f"appointment {payload.appointment_id!r} is {current.status.value}; "
            f"it cannot become {target.value}",
        )
