"""D-02 appointments: booked → confirmed → attended | no_show | cancelled."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from intake_story import (
    Story,
    accepted,
    attended,
    booked,
    cancelled,
    confirmed,
    no_show,
    refused,
    registered,
)

from branchline_intake.domain import AppointmentStatus
from branchline_shared.events import catalogue as c

pytestmark = pytest.mark.unit

Step = Callable[[], c.AppointmentEvent]


def _story(*steps: Step) -> Story:
    return Story().given(registered(), booked(), *(step() for step in steps))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ((confirmed, attended), AppointmentStatus.ATTENDED),
        ((confirmed, no_show), AppointmentStatus.NO_SHOW),
        ((confirmed, cancelled), AppointmentStatus.CANCELLED),
        ((cancelled,), AppointmentStatus.CANCELLED),
    ],
    ids=["attended", "no_show", "cancelled_after_confirmation", "cancelled_when_booked"],
)
def test_d02_allowed_transitions_are_accepted(
    path: tuple[Step, ...], status: AppointmentStatus
) -> None:
    story = _story(*path)

    assert story.state.appointments["A-1"].status is status


@pytest.mark.parametrize(
    ("done", "step"),
    [
        ((), attended),
        ((), no_show),
        ((confirmed,), confirmed),
        ((confirmed, attended), cancelled),
        ((confirmed, attended), no_show),
        ((confirmed, no_show), attended),
        ((cancelled,), confirmed),
        ((cancelled,), cancelled),
    ],
    ids=[
        "attended_before_confirmed",
        "no_show_before_confirmed",
        "confirmed_twice",
        "cancelled_after_attended",
        "no_show_after_attended",
        "attended_after_no_show",
        "confirmed_after_cancelled",
        "cancelled_twice",
    ],
)
def test_d02_transition_out_of_order_is_refused(done: tuple[Step, ...], step: Step) -> None:
    story = _story(*done)

    violation = refused(story.when(step()), "D-02")

    assert violation.title == "Appointment transition not allowed"


def test_d02_transition_of_unknown_appointment_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(confirmed("A-404")), "D-02")

    assert violation.field == "data.appointment_id"


def test_d02_booking_the_same_id_twice_is_refused() -> None:
    story = _story()

    violation = refused(story.when(booked()), "D-02")

    assert violation.title == "Appointment already booked"


def test_d02_two_appointments_are_independent() -> None:
    story = _story(confirmed).given(booked("A-2"))

    accepted(story.when(cancelled("A-2")))
    accepted(story.when(attended("A-1")))
