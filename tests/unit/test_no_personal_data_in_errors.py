"""D-04: refusals and logs never echo what the caller sent (it may be personal data)."""

from __future__ import annotations

import logging
import sys

import pytest
from pydantic import ValidationError

from branchline_shared.events.catalogue import parse_payload
from branchline_shared.events.envelope import SubmittedEvent
from branchline_shared.http.problems import field_errors
from branchline_shared.kafka.wire import PoisonEvent, decode_event
from branchline_shared.logging_setup import JsonLineFormatter, describe_error

pytestmark = pytest.mark.unit

PLANTED = "Zhuang Qiaolian"


def errors_of(event_type: str, data: dict[str, object]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_payload(event_type, data)
    return caught.value


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("client.personal_data_recorded", {"fields": {PLANTED: "x"}}),
        ("product.terms_confirmed", {"product_id": "P", "terms": {PLANTED: "3%"}}),
        ("client.registered", {"client_type": PLANTED, "rm_id": PLANTED}),
        ("appointment.booked", {"appointment_id": "A", "slot_start": PLANTED}),
    ],
)
def test_field_errors_name_fields_never_values(event_type: str, data: dict[str, object]) -> None:
    errors = field_errors(errors_of(event_type, data).errors())
    assert errors
    assert PLANTED not in repr(errors)
    assert all("input" not in e for e in errors)


def test_a_refused_key_is_named_key_and_quoted_input_is_dropped() -> None:
    errors = field_errors(
        errors_of("client.personal_data_recorded", {"fields": {PLANTED: "x"}}).errors()
    )
    assert errors[0]["field"] == "fields.<key>"
    with pytest.raises(ValidationError) as caught:
        SubmittedEvent.model_validate({"event_id": "Wang-Fang-123"})
    uuid_error = next(e for e in field_errors(caught.value.errors()) if e["field"] == "event_id")
    assert "W" not in uuid_error["message"].split("character")[-1]


def test_a_message_quoting_the_input_is_replaced() -> None:
    error = {
        "loc": ("x",),
        "msg": f"Value error, {PLANTED} is odd",
        "type": "value_error",
        "input": PLANTED,
    }
    (shown,) = field_errors([error])
    assert PLANTED not in shown["message"]
    assert shown["message"] == "invalid value (value_error)"


def test_logged_tracebacks_and_dead_letter_reasons_carry_no_input() -> None:
    error = errors_of("client.registered", {"client_type": PLANTED, "rm_id": "r"})
    assert PLANTED in str(error)  # what pydantic would have written
    assert PLANTED not in describe_error(error)
    try:
        try:
            raise error
        except ValidationError as exc:
            raise RuntimeError("projection failed") from exc
    except RuntimeError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonLineFormatter("test").format(record)
    assert PLANTED not in line
    assert "client_type" in line
    assert "projection failed" in line
    with pytest.raises(PoisonEvent) as poison:
        decode_event(f'{{"event_id": "{PLANTED}"}}'.encode())
    assert PLANTED not in str(poison.value)
