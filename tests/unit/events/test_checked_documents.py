"""A model validated without the per-field checks the strict input check already made (#12):
for a document that check passes, the checked validator accepts only what the model accepts,
and makes the very object the model makes; the batch route falls back to the model for the
rest, so its answers (accepted or refused, and the errors) are the model's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from branchline_intake.entrypoints.http import _submitted
from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.bounded import _sealable, clean_text, clean_token
from branchline_shared.events.checked_documents import _without_checked, checked_document_validator
from branchline_shared.events.envelope import SubmittedEvent
from branchline_shared.http.strict_input import body_errors

CHECKED = checked_document_validator(SubmittedEvent)

BASE: dict[str, Any] = {
    "type": "client.registered",
    "occurred_at": "2026-12-03T10:00:00+08:00",
    "client_id": "C-1",
    "branch_id": "BR-1",
    "channel": "walk_in",
    "actor": {"id": "s-1", "role": "teller"},
    "data": {"client_type": "individual", "rm_id": "rm-1"},
}

# Strings that hit every check left out or replaced: spaces, tab and line feed (refused in
# tokens, allowed in text), non-ASCII letters, format and separator characters, controls and
# the reserved prefix (refused by the strict check, so never seen), and plain ids.
_TEXT = st.one_of(
    st.sampled_from(["C-1", "s-1", " C-2 ", "a.b:c@d", "x" * 129, "", "teller", "rm"]),
    st.text(alphabet="aZ09-._:@ \t\né\u200b\u00a0\u2028\x00\x7f", max_size=10),
    st.just(SEALED_PREFIX + "abc"),
    st.text(max_size=6),
)
_FIELDS = ("type", "client_id", "product_id", "staff_id", "branch_id", "correlation_id")


@st.composite
def submissions(draw: st.DrawFn) -> dict[str, Any]:
    item = dict(BASE)
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=3, unique=True)):
        item[name] = draw(_TEXT)
    if draw(st.booleans()):
        item["actor"] = {"id": draw(_TEXT), "role": draw(_TEXT)}
    if draw(st.booleans()):
        item["late_entry"] = {"reason": draw(_TEXT)}
    if draw(st.booleans()):
        item["causation_id"] = draw(_TEXT)
    return item


def _fields_set(model: BaseModel) -> list[Any]:
    nested = [getattr(model, name) for name in sorted(model.model_fields_set)]
    return [model.model_fields_set] + [
        _fields_set(value) for value in nested if isinstance(value, BaseModel)
    ]


def _model(item: dict[str, Any]) -> SubmittedEvent | list[Any]:
    try:
        return SubmittedEvent.model_validate(item)
    except ValidationError as exc:
        return exc.errors(include_url=False, include_context=False)


@settings(max_examples=500, deadline=None)
@given(submissions())
def test_what_the_checked_validator_accepts_the_model_makes_alike(item: dict[str, Any]) -> None:
    if body_errors({"events": [item]}):
        return  # refused by the strict input check: never validated
    expected = _model(item)
    try:
        made = CHECKED.validate_python(item)
    except ValidationError:
        made = None
    if made is not None:
        assert isinstance(expected, SubmittedEvent)
        assert type(made) is SubmittedEvent
        assert type(made.actor) is type(expected.actor)
        assert made == expected
        assert _fields_set(made) == _fields_set(expected)
        assert made.model_dump_json() == expected.model_dump_json()
    # The batch route's answer is the model's, accepted or refused, errors and all.
    try:
        answered: SubmittedEvent | list[Any] = _submitted(item)
    except ValidationError as exc:
        answered = exc.errors(include_url=False, include_context=False)
    assert answered == expected


def test_the_python_checks_are_left_out_nested_models_included() -> None:
    # A non-ASCII role is one the model accepts (a letter) and the checked validator refuses
    # (printable ASCII only): proof that the nested Actor is validated without clean_token,
    # not by its own prebuilt validator. The route then answers as the model does.
    item = {**BASE, "actor": {"id": "s-1", "role": "caissière"}}
    assert SubmittedEvent.model_validate(item).actor.role == "caissière"
    with pytest.raises(ValidationError) as refused:
        CHECKED.validate_python(item)
    assert refused.value.errors()[0]["loc"] == ("actor", "role")
    assert _submitted(item) == SubmittedEvent.model_validate(item)


def test_no_per_field_python_check_is_left_in_the_submission_schema() -> None:
    left: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            function = node.get("function")
            if isinstance(function, dict) and function.get("function") in (
                clean_text,
                clean_token,
                _sealable,
            ):
                left.append(function["function"])
            for key, value in node.items():
                if key not in ("cls", "function", "metadata"):
                    walk(value)

    walk(_without_checked(SubmittedEvent.__pydantic_core_schema__))
    assert left == []
