"""D-06 consultations: opened → (promised →) answered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from intake_story import Story, accepted, answered, opened, refused, registered

from branchline_intake.domain import ConsultationStatus

pytestmark = pytest.mark.unit


def test_d06_answer_to_open_question_is_accepted() -> None:
    story = Story().given(registered(), opened(), answered())

    assert story.state.consultations["Q-1"].status is ConsultationStatus.ANSWERED


def test_d06_promise_then_answer_is_accepted() -> None:
    story = Story().given(registered(), opened())
    story.given(answered(promised_by=story.now + timedelta(days=1)))
    assert story.state.consultations["Q-1"].status is ConsultationStatus.PROMISED

    accepted(story.when(answered()))


def test_d06_second_promise_is_accepted() -> None:
    story = Story().given(registered(), opened())
    story.given(answered(promised_by=story.now + timedelta(days=1)))

    accepted(story.when(answered(promised_by=story.now + timedelta(days=2))))


def test_d06_answer_to_unknown_consultation_is_refused() -> None:
    story = Story().given(registered())

    violation = refused(story.when(answered("Q-404")), "D-06")

    assert violation.title == "Unknown consultation"


def test_d06_opening_the_same_consultation_twice_is_refused() -> None:
    story = Story().given(registered(), opened())

    refused(story.when(opened()), "D-06")


def test_d06_anything_after_the_answer_is_refused() -> None:
    story = Story().given(registered(), opened(), answered())

    violation = refused(story.when(answered()), "D-06")

    assert violation.title == "Consultation already answered"


def test_d06_promise_in_the_past_is_refused() -> None:
    story = Story().given(registered(), opened())

    violation = refused(story.when(answered(promised_by=story.now), at=story.now), "D-06")

    assert violation.field == "data.promised_by"
