"""Personal data in payloads: declared per type (PERSONAL_FIELDS), withheld on demand."""

from __future__ import annotations

import json

import pytest
from tests.support.examples import example_data

from branchline_shared.events.catalogue import PERSONAL_FIELDS
from branchline_shared.events.personal_data import REDACTED, personal_paths, redact_personal

pytestmark = pytest.mark.unit


def test_personal_field_values_are_redacted_and_their_names_kept() -> None:
    data = example_data("client.personal_data_recorded")

    redacted = redact_personal("client.personal_data_recorded", data)

    assert redacted == {
        "fields": dict.fromkeys(data["fields"], REDACTED),
        "purpose": "service",
    }


def test_redaction_leaves_the_input_alone() -> None:
    data = example_data("client.personal_data_recorded")
    before = json.dumps(data, sort_keys=True)

    redact_personal("client.personal_data_recorded", data)

    assert json.dumps(data, sort_keys=True) == before


@pytest.mark.parametrize("event_type", sorted(PERSONAL_FIELDS))
def test_no_personal_value_survives_redaction(event_type: str) -> None:
    data = example_data(event_type)
    personal = [value for path in PERSONAL_FIELDS[event_type] for value in _strings(data.get(path))]

    text = json.dumps(redact_personal(event_type, data))

    assert all(value not in text for value in personal)


def test_type_without_personal_data_is_copied_unchanged() -> None:
    data = example_data("visit.closed")

    redacted = redact_personal("visit.closed", data)

    assert redacted == data
    assert redacted is not data


def test_absent_optional_personal_field_stays_absent() -> None:
    assert redact_personal("visit.next_steps_explained", {"visit_id": "V-1"}) == {"visit_id": "V-1"}


def test_unknown_type_keeps_nothing() -> None:
    assert personal_paths("visit.teleported") is None
    assert redact_personal("visit.teleported", {"secret": "x"}) == {}


def test_overlong_keys_of_a_personal_object_are_dropped() -> None:
    data = {"fields": {"name": "Wang", "k" * 65: "x"}}

    assert redact_personal("client.personal_data_recorded", data) == {"fields": {"name": REDACTED}}


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []
