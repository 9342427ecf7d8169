"""D-07 complaints: received → acknowledged → progress (0..n) → resolved → confirmed → closed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from intake_story import (
    Story,
    accepted,
    acknowledged,
    complaint_closed,
    confirmed_by_client,
    progress,
    received,
    refused,
    registered,
    resolved,
)

from branchline_intake.domain import ComplaintStatus
from branchline_shared.events import catalogue as c

pytestmark = pytest.mark.unit

Step = Callable[[], c.ComplaintEvent]


def _story(*steps: Step) -> Story:
    return Story().given(registered(), received(), *(step() for step in steps))


def test_d07_closed_loop_in_order_is_accepted() -> None:
    story = _story(acknowledged, progress, progress, resolved, confirmed_by_client)

    accepted(story.when(complaint_closed()))


def test_d07_resolution_without_progress_reports_is_accepted() -> None:
    story = _story(acknowledged)

    accepted(story.when(resolved()))


def test_d07_unsatisfied_client_reopens_the_work() -> None:
    story = _story(acknowledged, resolved, lambda: confirmed_by_client(satisfied=False))

    accepted(story.when(progress()))
    story.given(resolved(), confirmed_by_client(satisfied=True), complaint_closed())
    complaint = story.state.complaints["K-1"]
    assert complaint.status is ComplaintStatus.CLOSED
    assert complaint.resolutions == 2


def test_d07_unsatisfied_client_complaint_may_still_be_closed() -> None:
    story = _story(acknowledged, resolved, lambda: confirmed_by_client(satisfied=False))

    accepted(story.when(complaint_closed()))


def test_d07_duplicate_receipt_is_refused() -> None:
    story = _story()

    violation = refused(story.when(received()), "D-07")

    assert violation.title == "Complaint already received"


def test_d07_step_of_unknown_complaint_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(acknowledged("K-404")), "D-07")

    assert violation.field == "data.complaint_id"


def test_d07_close_without_resolution_is_refused() -> None:
    story = _story(acknowledged, progress)

    violation = refused(story.when(complaint_closed()), "D-07")

    assert violation.title == "Complaint not resolved"


def test_d07_close_without_client_confirmation_is_refused() -> None:
    story = _story(acknowledged, resolved)

    violation = refused(story.when(complaint_closed()), "D-07")

    assert violation.title == "Client has not confirmed"


@pytest.mark.parametrize(
    ("done", "step"),
    [
        ((), progress),
        ((), resolved),
        ((), confirmed_by_client),
        ((acknowledged,), acknowledged),
        ((acknowledged,), confirmed_by_client),
        ((acknowledged, resolved), progress),
        ((acknowledged, resolved), resolved),
        ((acknowledged, resolved, confirmed_by_client), progress),
        ((acknowledged, resolved, confirmed_by_client, complaint_closed), progress),
        ((acknowledged, resolved, confirmed_by_client, complaint_closed), complaint_closed),
    ],
    ids=[
        "progress_before_acknowledged",
        "resolved_before_acknowledged",
        "confirmed_before_resolved",
        "acknowledged_twice",
        "confirmed_without_resolution",
        "progress_after_resolution",
        "resolved_twice",
        "progress_after_satisfied_confirmation",
        "progress_after_closed",
        "closed_twice",
    ],
)
def test_d07_step_out_of_order_is_refused(done: tuple[Step, ...], step: Step) -> None:
    story = _story(*done)

    refused(story.when(step()), "D-07")


def test_d07_two_complaints_are_independent() -> None:
    story = _story(acknowledged).given(received("K-2"))

    accepted(story.when(acknowledged("K-2")))
    refused(story.when(complaint_closed("K-1")), "D-07")
