"""The catalogue: one payload model per type of docs/api.md; every example valid; every kind of bad
input refused with the offending field named.

The generic cases are derived from each model's JSON Schema (the wire contract): every required
field, every closed value set, every time and every bounded text of every type.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from tests.support.examples import EXAMPLE_PAYLOADS, example_data

from branchline_shared.events import catalogue as c
from branchline_shared.events.sealing_keys import sealing_key_id

pytestmark = pytest.mark.unit

API_TYPES = {
    "client.registered",
    "client.consent_granted",
    "client.consent_withdrawn",
    "client.personal_data_recorded",
    "client.identity_verified",
    "client.risk_assessed",
    "client.erasure_requested",
    "client.data_access_requested",
    "appointment.booked",
    "appointment.confirmed",
    "appointment.cancelled",
    "appointment.attended",
    "appointment.no_show",
    "visit.arrived",
    "visit.needs_confirmed",
    "visit.guidance_given",
    "visit.documents_checked",
    "visit.business_handled",
    "visit.next_steps_explained",
    "visit.closed",
    "consultation.opened",
    "consultation.answered",
    "product.recommended",
    "product.risk_disclosed",
    "product.terms_confirmed",
    "product.sold",
    "complaint.received",
    "complaint.acknowledged",
    "complaint.progress_reported",
    "complaint.resolved",
    "complaint.confirmed_by_client",
    "complaint.closed",
    "feedback.survey_answered",
    # docs/api.md "Additions" (D-03, D-05b)
    "client.screened",
    "client.beneficial_owner_recorded",
    "client.late_entry_approved",
    # the service loop (D-07, D-09, D-11, D-17)
    "client.account_closed",
    "client.account_reopened",
    "consultation.promise_renegotiated",
    "complaint.promise_renegotiated",
    "complaint.corrective_action_planned",
    "complaint.corrective_action_completed",
    "feedback.received",
    "feedback.responded",
}
GOVERNANCE_TYPES = {
    # subjects other than a client (D-13, D-14, D-16)
    "product.approved",
    "product.rerated",
    "product.suspended",
    "product.withdrawn",
    "staff.qualified",
    "staff.qualification_renewed",
    "staff.qualification_revoked",
    "staff.training_recorded",
    "staff.interest_declared",
    "staff.gift_recorded",
    "staff.erasure_requested",
    "staff.personal_data_shredded",
    "staff.data_access_requested",
    "staff.personal_data_accessed",
}
SYSTEM_TYPES = {
    "rule.violation_refused",
    "client.personal_data_accessed",
    "client.data_read",
    "client.personal_data_shredded",
    "staff.personal_data_shredded",
    "staff.personal_data_accessed",
    "followup.task_created",
    "followup.completed",
    "followup.reassigned",
    "followup.overdue",
    "followup.escalated",
    "audit.legal_hold_placed",
    "audit.legal_hold_lifted",
}
NAIVE = "2026-11-22T09:00:00"


# --- schema walking -----------------------------------------------------------------------------


def _variants(prop: dict[str, Any], defs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "$ref" in prop:
        yield from _variants(defs[prop["$ref"].rsplit("/", 1)[-1]], defs)
    elif "anyOf" in prop:
        for option in prop["anyOf"]:
            yield from _variants(option, defs)
    else:
        yield prop


def _fields(event_type: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(field, one variant of its schema, is_array_item) for every top-level field."""
    schema = c.PAYLOAD_MODELS[event_type].model_json_schema()
    defs = schema.get("$defs", {})
    for name, prop in schema["properties"].items():
        for variant in _variants(prop, defs):
            yield name, variant, False
            if "items" in variant:
                for item in _variants(variant["items"], defs):
                    yield name, item, True


def _cases(predicate: Any) -> list[tuple[str, str, dict[str, Any], bool]]:
    return [
        (t, name, variant, in_array)
        for t in sorted(c.PAYLOAD_MODELS)
        for name, variant, in_array in _fields(t)
        if predicate(variant)
    ]


def _required() -> list[tuple[str, str]]:
    return [
        (t, name)
        for t, model in sorted(c.PAYLOAD_MODELS.items())
        for name in model.model_json_schema().get("required", [])
    ]


def _ids(case: tuple[Any, ...]) -> str:
    return f"{case[0]}.{case[1]}"


def _locs(error: ValidationError) -> list[tuple[int | str, ...]]:
    return [tuple(e["loc"]) for e in error.errors()]


def _refused(event_type: str, data: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        c.parse_payload(event_type, data)
    return caught.value


ENUMS = _cases(lambda v: "enum" in v)
TIMES = _cases(lambda v: v.get("format") == "date-time")
TEXTS = _cases(lambda v: v.get("type") == "string" and "maxLength" in v)


# --- the registry -------------------------------------------------------------------------------


def test_registry_holds_exactly_the_api_and_system_types() -> None:
    assert set(c.PAYLOAD_MODELS) == API_TYPES | GOVERNANCE_TYPES | SYSTEM_TYPES
    assert c.SYSTEM_EVENT_TYPES == SYSTEM_TYPES
    assert c.GOVERNANCE_EVENT_TYPES == GOVERNANCE_TYPES
    assert {t.value for t in c.EventType} == set(c.PAYLOAD_MODELS)


def test_each_type_names_its_subject_and_seals_with_that_subjects_key() -> None:
    """Issue #9: free text of an event not about a client is sealed too, with the key of its
    subject (a member of staff's own, the institution's for the shelf), never a client's."""
    for event_type, subject in c.SUBJECT_OF.items():
        expected = event_type.split(".")[0] if event_type in GOVERNANCE_TYPES else "client"
        assert subject.value == expected, event_type
        key_id = sealing_key_id(event_type, client_id="C-1", staff_id="S-1")
        if subject is c.Subject.CLIENT:
            assert key_id == "C-1", event_type
        else:
            assert key_id is not None, event_type
            assert key_id.startswith("#"), event_type  # never a client id (no "#" in ids)


def test_registry_keys_are_plain_strings() -> None:
    assert all(type(t) is str for t in c.PAYLOAD_MODELS)


def test_every_type_is_version_1_but_those_with_an_upcaster() -> None:
    from branchline_shared.events.upcasting import UPCASTERS

    bumped = {t: v for t, v in c.CATALOGUE_VERSION.items() if v != 1}
    assert bumped == {
        "product.risk_disclosed": 2,  # D-05: itemised disclosure
        "product.terms_confirmed": 2,  # D-05: named terms
        "followup.completed": 2,  # issue #9: the outcome became a closed code
    }
    assert all((t, v) in UPCASTERS for t, last in bumped.items() for v in range(1, last))


def test_identity_document_expiry_is_a_time_or_a_date() -> None:
    as_date = c.parse_payload(
        "client.identity_verified",
        {**example_data("client.identity_verified"), "document_expires_at": "2030-05-01"},
    )
    assert isinstance(as_date, c.ClientIdentityVerified)
    assert as_date.document_expires_at is not None
    assert as_date.document_expires_at.isoformat() == "2030-05-01T00:00:00+00:00"


def test_event_type_of_is_the_inverse_of_payload_model() -> None:
    for event_type in c.PAYLOAD_MODELS:
        payload = c.parse_payload(event_type, example_data(event_type))
        assert c.event_type_of(payload) == event_type


def test_unknown_type_is_refused() -> None:
    with pytest.raises(c.UnknownEventType) as caught:
        c.parse_payload("visit.teleported", {})
    assert caught.value.event_type == "visit.teleported"


def test_every_model_is_frozen_and_forbids_extra_fields() -> None:
    for model in c.PAYLOAD_MODELS.values():
        assert model.model_config.get("frozen") is True
        assert model.model_config.get("extra") == "forbid"


def test_personal_fields_name_real_fields_of_every_type() -> None:
    assert set(c.PERSONAL_FIELDS) == set(c.PAYLOAD_MODELS)
    for event_type, paths in c.PERSONAL_FIELDS.items():
        heads = {p.split(".", 1)[0] for p in paths}  # "a.b": the key b inside the object a
        assert heads <= set(c.PAYLOAD_MODELS[event_type].model_fields), event_type
    assert c.PERSONAL_FIELDS["client.personal_data_recorded"] == ("fields",)


def test_the_generic_cases_are_not_empty() -> None:
    assert len(ENUMS) >= 20
    assert len(TIMES) >= 12
    assert len(TEXTS) >= 30


# --- valid examples -----------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(c.PAYLOAD_MODELS))
def test_example_of_every_type_is_valid(event_type: str) -> None:
    payload = c.parse_payload(event_type, example_data(event_type))

    assert isinstance(payload, c.PAYLOAD_MODELS[event_type])


@pytest.mark.parametrize("event_type", sorted(c.PAYLOAD_MODELS))
def test_example_survives_a_json_round_trip(event_type: str) -> None:
    payload = c.parse_payload(event_type, example_data(event_type))

    again = c.parse_payload(event_type, payload.model_dump(mode="json"))

    assert again == payload


@pytest.mark.parametrize("event_type", sorted(c.PAYLOAD_MODELS))
def test_extra_field_is_refused(event_type: str) -> None:
    error = _refused(event_type, {**example_data(event_type), "unexpected": 1})

    assert _locs(error) == [("unexpected",)]


def test_payload_cannot_be_changed() -> None:
    payload = c.parse_payload("client.registered", example_data("client.registered"))

    with pytest.raises(ValidationError):
        payload.rm_id = "someone-else"  # type: ignore[misc]


# --- generic refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "field"), _required(), ids=lambda v: str(v))
def test_missing_required_field_is_refused_naming_it(event_type: str, field: str) -> None:
    data = example_data(event_type)
    del data[field]

    error = _refused(event_type, data)

    assert (field,) in _locs(error)
    assert "missing" in {e["type"] for e in error.errors()}


@pytest.mark.parametrize("case", ENUMS, ids=_ids)
def test_value_outside_a_closed_set_is_refused_naming_the_field(
    case: tuple[str, str, dict[str, Any], bool],
) -> None:
    event_type, field, _, in_array = case
    data = example_data(event_type)
    data[field] = ["not_a_member"] if in_array else "not_a_member"

    error = _refused(event_type, data)

    assert all(loc[0] == field for loc in _locs(error)), _locs(error)


@pytest.mark.parametrize("case", TIMES, ids=_ids)
def test_time_without_offset_is_refused_naming_the_field(
    case: tuple[str, str, dict[str, Any], bool],
) -> None:
    event_type, field, _, _ = case
    data = example_data(event_type)
    data[field] = NAIVE

    error = _refused(event_type, data)

    assert _locs(error) == [(field,)]
    assert error.errors()[0]["type"] == "timezone_aware"


@pytest.mark.parametrize("case", TEXTS, ids=_ids)
def test_oversize_text_is_refused_naming_the_field(
    case: tuple[str, str, dict[str, Any], bool],
) -> None:
    event_type, field, variant, in_array = case
    data = example_data(event_type)
    oversize = "x" * (variant["maxLength"] + 1)
    data[field] = [oversize] if in_array else oversize

    error = _refused(event_type, data)

    assert all(loc[0] == field for loc in _locs(error)), _locs(error)


# --- specific refusals --------------------------------------------------------------------------


def test_identifier_with_spaces_is_refused() -> None:
    error = _refused("visit.arrived", {"visit_id": "V 1"})

    assert _locs(error) == [("visit_id",)]


def test_nested_time_without_offset_is_refused_naming_the_path() -> None:
    data = example_data("rule.violation_refused")
    data["refused_event"]["occurred_at"] = NAIVE

    error = _refused("rule.violation_refused", data)

    assert _locs(error) == [("refused_event", "occurred_at")]


def test_rule_id_must_look_like_a_rule_of_the_standard() -> None:
    error = _refused(
        "rule.violation_refused", {**example_data("rule.violation_refused"), "rule": "R-5"}
    )

    assert _locs(error) == [("rule",)]


@pytest.mark.parametrize("flag", ["true", 1, "yes"])
@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("visit.documents_checked", "complete"),
        ("product.risk_disclosed", "acknowledged"),
        ("complaint.confirmed_by_client", "satisfied"),
        ("complaint.received", "complex"),
    ],
)
def test_booleans_are_strict(event_type: str, field: str, flag: object) -> None:
    error = _refused(event_type, {**example_data(event_type), field: flag})

    assert _locs(error) == [(field,)]


@pytest.mark.parametrize("score", [-1, 101, 80.0, "80", True])
def test_survey_score_must_be_an_integer_from_0_to_100(score: object) -> None:
    data = example_data("feedback.survey_answered")
    data["scores"]["attitude"] = score

    error = _refused("feedback.survey_answered", data)

    assert _locs(error) == [("scores", "attitude")]


@pytest.mark.parametrize(
    "dimension", ["attitude", "professionalism", "response_speed", "risk_management", "convenience"]
)
def test_survey_needs_all_five_dimensions(dimension: str) -> None:
    data = example_data("feedback.survey_answered")
    del data["scores"][dimension]

    assert _locs(_refused("feedback.survey_answered", data)) == [("scores", dimension)]


def test_documents_complete_with_missing_items_is_refused() -> None:
    error = _refused(
        "visit.documents_checked", {"visit_id": "V-1", "complete": True, "missing": ["id"]}
    )

    assert "missing must be empty" in str(error)


def test_documents_incomplete_must_list_what_is_missing() -> None:
    error = _refused("visit.documents_checked", {"visit_id": "V-1", "complete": False})

    assert "missing must list" in str(error)


def test_documents_incomplete_with_missing_items_is_valid() -> None:
    payload = c.parse_payload(
        "visit.documents_checked",
        {"visit_id": "V-1", "complete": False, "missing": ["proof of address"]},
    )

    assert payload == c.VisitDocumentsChecked(
        visit_id="V-1", complete=False, missing=("proof of address",)
    )


@pytest.mark.parametrize("outcome", ["left_early", "referred"])
def test_early_end_of_visit_needs_a_reason(outcome: str) -> None:
    error = _refused("visit.closed", {"visit_id": "V-1", "outcome": outcome})

    assert "reason is required" in str(error)


def test_business_cannot_end_before_it_starts() -> None:
    data = example_data("visit.business_handled")
    data["ended_at"] = "2026-11-22T09:00:00+08:00"

    assert "ended_at must not be before started_at" in str(_refused("visit.business_handled", data))


def test_appointment_slot_must_end_after_it_starts() -> None:
    data = example_data("appointment.booked")
    data["slot_end"] = data["slot_start"]

    assert "slot_end must be after slot_start" in str(_refused("appointment.booked", data))


def test_consultation_answer_needs_an_answer_or_a_promise() -> None:
    error = _refused("consultation.answered", {"consultation_id": "Q-1"})

    assert "either answer or promised_by" in str(error)


def test_consultation_promise_alone_is_valid() -> None:
    payload = c.parse_payload(
        "consultation.answered",
        {
            "consultation_id": "Q-1",
            "promised_by": "2026-11-23T10:00:00+08:00",
            "follow_up_channel": "phone",
        },
    )

    assert isinstance(payload, c.ConsultationAnswered)
    assert payload.answer is None


@pytest.mark.parametrize("purposes", [[], ["service", "service"]])
def test_consent_purposes_must_be_given_once_each(purposes: list[str]) -> None:
    error = _refused("client.consent_granted", {"purposes": purposes})

    assert _locs(error) == [("purposes",)]


def test_personal_data_purpose_defaults_to_service() -> None:
    payload = c.parse_payload("client.personal_data_recorded", {"fields": {"name": "Wang Fang"}})

    assert isinstance(payload, c.ClientPersonalDataRecorded)
    assert payload.purpose is c.ConsentPurpose.SERVICE


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({}, ("fields",)),
        ({"shoe_size": "42"}, ("fields", "shoe_size", "[key]")),
        ({"name": "x" * 501}, ("fields", "name")),
        ({"name": 42}, ("fields", "name")),
    ],
    ids=["empty", "unknown_field", "oversize_value", "not_a_string"],
)
def test_personal_fields_are_a_bounded_closed_set(
    fields: dict[str, Any], loc: tuple[str, ...]
) -> None:
    error = _refused("client.personal_data_recorded", {"fields": fields})

    assert _locs(error) == [loc]


@pytest.mark.parametrize(
    ("terms", "loc"),
    [
        ({"colour": "blue"}, ("terms",)),
        ({"other": {"Rate": "3%"}}, ("terms", "other", "Rate", "[key]")),
        ({"rate": 3.1}, ("terms", "rate")),
        ({"rate": "x" * 1001}, ("terms", "rate")),
    ],
    ids=["unknown_term", "bad_key", "not_a_string", "oversize"],
)
def test_terms_are_named_strings(terms: dict[str, Any], loc: tuple[str, ...]) -> None:
    error = _refused("product.terms_confirmed", {"product_id": "P-1", "terms": terms})

    assert _locs(error) == [loc]


@pytest.mark.parametrize("amount", [0, -5, "NaN", "Infinity", "abc", "1.23456"])
def test_sale_amount_must_be_a_positive_finite_decimal(amount: object) -> None:
    error = _refused("product.sold", {"product_id": "P-1", "amount": amount})

    assert _locs(error) == [("amount",)]


def test_sale_amount_accepts_json_numbers_and_decimal_strings() -> None:
    as_number = c.parse_payload("product.sold", {"product_id": "P-1", "amount": 250000.5})
    as_string = c.parse_payload("product.sold", {"product_id": "P-1", "amount": "250000.50"})

    assert as_number == as_string


def test_sale_currency_is_an_iso_code() -> None:
    error = _refused("product.sold", {"product_id": "P-1", "amount": 1, "currency": "yuan"})

    assert _locs(error) == [("currency",)]


def test_json_schema_of_every_type_can_be_generated() -> None:
    for model in c.PAYLOAD_MODELS.values():
        schema = model.model_json_schema()
        assert schema["type"] == "object"
        assert schema.get("additionalProperties") is False


def test_models_do_not_share_mutable_examples() -> None:
    first = example_data("product.terms_confirmed")
    first["terms"]["period"] = "changed"

    assert EXAMPLE_PAYLOADS["product.terms_confirmed"]["terms"]["period"] != "changed"
    assert copy.deepcopy(dict(EXAMPLE_PAYLOADS["client.registered"])) == example_data(
        "client.registered"
    )


def test_public_names_of_the_lead_still_work() -> None:
    assert issubclass(c.ClientRegistered, c.EventPayload)
    assert issubclass(c.EventPayload, BaseModel)
    assert c.payload_model("client.registered") is c.ClientRegistered
    assert c.ClientType("cross_border") is c.ClientType.CROSS_BORDER
