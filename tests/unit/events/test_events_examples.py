"""The shared examples: one valid payload per type; a journey through every type."""

from __future__ import annotations

import pytest
from tests.support.examples import (
    EXAMPLE_CLIENT_ID,
    EXAMPLE_JOURNEY,
    EXAMPLE_PAYLOADS,
    EXAMPLE_SHELF,
    example_data,
    submission,
)

from branchline_shared.events.catalogue import PAYLOAD_MODELS, parse_payload
from branchline_shared.events.envelope import SubmittedEvent

pytestmark = pytest.mark.unit


def test_there_is_an_example_for_every_type() -> None:
    assert set(EXAMPLE_PAYLOADS) == set(PAYLOAD_MODELS)


def test_example_data_is_a_private_copy() -> None:
    data = example_data("visit.arrived")
    data["visit_id"] = "changed"

    assert EXAMPLE_PAYLOADS["visit.arrived"]["visit_id"] != "changed"


def test_unknown_example_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        example_data("visit.teleported")


def test_journey_and_shelf_cover_every_type() -> None:
    steps = (*EXAMPLE_SHELF, *EXAMPLE_JOURNEY)
    assert {step.type for step in steps} == set(PAYLOAD_MODELS)


@pytest.mark.parametrize("step", EXAMPLE_SHELF, ids=lambda s: s.type)
def test_every_shelf_step_names_its_own_subject(step: object) -> None:
    submitted = SubmittedEvent.model_validate(submission(step))  # type: ignore[arg-type]

    assert submitted.client_id is None
    assert submitted.subject_id in ("P-FUND-007", "rm-42", "staff-17", "staff-leaver-1")


@pytest.mark.parametrize("step", EXAMPLE_JOURNEY, ids=lambda s: s.type)
def test_every_journey_step_is_a_valid_submission(step: object) -> None:
    body = submission(step)  # type: ignore[arg-type]

    submitted = SubmittedEvent.model_validate(body)

    assert submitted.client_id == EXAMPLE_CLIENT_ID
    parse_payload(submitted.type, submitted.data)


def test_submission_for_another_client() -> None:
    body = submission(EXAMPLE_JOURNEY[0], client_id="C-2")

    assert body["client_id"] == "C-2"
    assert "event_id" not in body
