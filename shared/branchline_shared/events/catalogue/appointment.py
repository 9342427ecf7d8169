"""Appointment events (D-02)."""

from __future__ import annotations

from typing import ClassVar

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    AppointmentEvent,
)
from branchline_shared.events.catalogue.checks import times_in_order
from branchline_shared.events.catalogue.scalars import (
    Label,
)
from branchline_shared.events.envelope import Identifier


class AppointmentBooked(AppointmentEvent):
    """appointment.booked (D-02): the assigned staff prepares before ``slot_start``."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("purpose",)

    slot_start: Instant
    slot_end: Instant | None = None
    purpose: Label
    staff_id: Identifier

    _slot_ordered = times_in_order("slot_start", "slot_end", strictly=True)


class AppointmentConfirmed(AppointmentEvent):
    """appointment.confirmed (D-02)."""


class AppointmentCancelled(AppointmentEvent):
    """appointment.cancelled (D-02)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("reason",)

    reason: Label | None = None


class AppointmentAttended(AppointmentEvent):
    """appointment.attended (D-02)."""


class AppointmentNoShow(AppointmentEvent):
    """appointment.no_show (D-02)."""
