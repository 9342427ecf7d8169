"""Where every string of the catalogue ends up (issue #9, findings 2 and 3).

The test walks every field of every payload model (introspecting the pydantic models, nested
parts included) and classifies each string: a closed code (enum), a bounded identifier or code
(pattern or token validator), a time, an id, a number, free text declared personal (sealed,
masked, shredded with the subject's key: a client's, a member of staff's, the institution's)
or free text Branchline writes itself. Free text of any other kind fails the test: a new field
has to be declared one way or the other. The envelope's own strings are walked too (its
late-entry reason is sealed)."""

from __future__ import annotations

import datetime as dt
import enum
import os
import types
import typing
import uuid
from decimal import Decimal
from typing import Annotated, Any, Union

import pytest
from pydantic import AwareDatetime, BaseModel, StringConstraints
from pydantic.functional_validators import AfterValidator
from tests.support.examples import example_data

from branchline_shared.crypto.sealing import DataKey, is_sealed, map_personal, seal_paths
from branchline_shared.events.bounded import clean_token
from branchline_shared.events.catalogue import (
    PAYLOAD_MODELS,
    PERSONAL_FIELDS,
    SYSTEM_EVENT_TYPES,
    parse_payload,
)
from branchline_shared.events.envelope import (
    LateEntry,
    Subject,
    SubmittedEvent,
    SubmittedLateEntry,
)
from branchline_shared.events.sealing_keys import (
    INSTITUTION_KEY_ID,
    STAFF_KEY_PREFIX,
    sealed_late_entry,
    sealing_key_id,
)

pytestmark = pytest.mark.unit

KEY = DataKey("k1", os.urandom(32))

CLOSED = "closed"
TOKEN = "token"
FREE = "free"


def _string_kind(metadata: list[Any]) -> str:
    for item in metadata:
        if isinstance(item, StringConstraints) and item.pattern:
            return TOKEN
        if getattr(item, "pattern", None):
            return TOKEN
        if isinstance(item, AfterValidator) and item.func is clean_token:
            return TOKEN
    return FREE


def _leaves(annotation: Any, path: str, metadata: list[Any]) -> list[tuple[str, str]]:
    """``(path, kind)`` of every string leaf under ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *extra = typing.get_args(annotation)
        return _leaves(base, path, [*metadata, *extra])
    if origin in (Union, types.UnionType):
        found: list[tuple[str, str]] = []
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                found += _leaves(arg, path, metadata)
        return found
    if origin in (tuple, list):
        return _leaves(typing.get_args(annotation)[0], f"{path}.[]", [])
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        keys = [(p.replace(".*", ".<key>"), k) for p, k in _leaves(key_type, f"{path}.*", [])]
        return keys + _leaves(value_type, f"{path}.*", [])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model_leaves(annotation, f"{path}.")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [(path, CLOSED)]
    if annotation in (uuid.UUID, dt.datetime, dt.date, AwareDatetime, Decimal, int, float, bool):
        return []
    if annotation is str:
        return [(path, _string_kind(metadata))]
    if annotation is Any:
        return [(path, "any")]
    raise AssertionError(f"{path}: unclassified type {annotation!r}")


def _model_leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        found += _leaves(field.annotation, prefix + name, list(field.metadata))
    return found


def _covered(path: str, declared: tuple[str, ...]) -> bool:
    plain = ".".join(p for p in path.split(".") if p not in ("[]", "*"))
    return any(plain == d or plain.startswith(d + ".") for d in declared)


def _where_every_string_ends_up() -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for event_type, model in sorted(PAYLOAD_MODELS.items()):
        row: dict[str, str] = {}
        for path, kind in _model_leaves(model):
            if _covered(path, model.PERSONAL_PATHS):
                row[path] = "sealed"
            elif kind == FREE and _covered(path, model.SYSTEM_TEXT_PATHS):
                row[path] = "system text"
            elif event_type == "rule.violation_refused" and path.startswith("refused_event.data"):
                # the refused submission's data, validated by its own type's model first (so
                # its keys are that model's field names) with its personal paths redacted
                row[path] = "redacted submission"
            else:
                row[path] = kind
        table[event_type] = row
    return table


def test_every_free_text_of_the_catalogue_is_sealed_or_written_by_branchline() -> None:
    table = _where_every_string_ends_up()
    in_clear = [
        f"{event_type}.{path}"
        for event_type, row in table.items()
        for path, place in row.items()
        if place in (FREE, "any")
    ]
    assert in_clear == [], "free text neither personal nor system-written: " + ", ".join(in_clear)


def test_system_text_only_on_types_branchline_emits_itself() -> None:
    for event_type, model in PAYLOAD_MODELS.items():
        if model.SYSTEM_TEXT_PATHS:
            assert event_type in SYSTEM_EVENT_TYPES, event_type


@pytest.mark.parametrize(
    ("event_type", "path", "subject"),
    [
        ("staff.qualification_revoked", "reason", Subject.STAFF),
        ("staff.training_recorded", "topic", Subject.STAFF),
        ("staff.interest_declared", "nature", Subject.STAFF),
        ("staff.gift_recorded", "description", Subject.STAFF),
        ("product.approved", "name", Subject.PRODUCT),
        ("product.rerated", "reason", Subject.PRODUCT),
        ("product.suspended", "reason", Subject.PRODUCT),
        ("product.withdrawn", "reason", Subject.PRODUCT),
        ("product.recommended", "product_name", Subject.CLIENT),
        ("product.risk_disclosed", "holding_period", Subject.CLIENT),
    ],
)
def test_free_texts_of_staff_and_product_events_are_sealed_with_their_subjects_key(
    event_type: str, path: str, subject: Subject
) -> None:
    """No free text stays in clear because its event is not about a client: a member of
    staff's texts are sealed with their own key, the shelf's with the institution's
    (docs/privacy.md "Which key")."""
    assert _where_every_string_ends_up()[event_type][path] == "sealed"
    assert PAYLOAD_MODELS[event_type].SUBJECT is subject
    key_id = sealing_key_id(event_type, client_id="C-1", staff_id="S-1")
    expected = {
        Subject.CLIENT: "C-1",
        Subject.STAFF: STAFF_KEY_PREFIX + "S-1",
        Subject.PRODUCT: INSTITUTION_KEY_ID,
    }[subject]
    assert key_id == expected


def _envelope_strings() -> dict[str, str]:
    """Where every string of the submitted envelope ends up (``data`` is the catalogue's)."""
    row: dict[str, str] = {}
    for path, kind in _model_leaves(SubmittedEvent):
        if path == "data" or path.startswith("data."):
            continue
        row[path] = "sealed" if path in ENVELOPE_SEALED else kind
    return row


ENVELOPE_SEALED = ("late_entry.reason",)
"""Envelope free text intake seals with the subject's key (``_sealed`` in intake's submit)."""


def test_every_string_of_the_envelope_is_a_code_a_token_or_sealed() -> None:
    row = _envelope_strings()
    assert row["late_entry.reason"] == "sealed"
    assert row["correlation_id"] == TOKEN
    assert row["causation_id"] == TOKEN
    in_clear = [path for path, place in row.items() if place in (FREE, "any")]
    assert in_clear == [], "envelope free text in clear: " + ", ".join(in_clear)


def test_a_late_entry_reason_is_read_back_sealed_but_refused_sealed_in_a_submission() -> None:
    late = LateEntry(reason="forgot to enter it, system down " + "x" * 160)
    sealed = sealed_late_entry(late, KEY, "C-1")
    assert is_sealed(sealed.reason)
    assert "forgot" not in sealed.reason
    assert len(sealed.reason) > 200  # beyond the clear limit: still read back
    assert LateEntry.model_validate(sealed.model_dump()).reason == sealed.reason
    short = sealed_late_entry(LateEntry(reason="late"), KEY, "C-1").reason
    assert len(short) <= 200
    with pytest.raises(ValueError, match="reserved"):
        SubmittedLateEntry.model_validate({"reason": short})


@pytest.mark.parametrize(
    ("event_type", "path"),
    [
        ("appointment.booked", "purpose"),
        ("appointment.cancelled", "reason"),
        ("visit.closed", "reason"),
        ("visit.documents_checked", "missing.[]"),
        ("visit.guidance_given", "materials.[]"),
        ("client.identity_verified", "verification_ref"),
        ("product.terms_confirmed", "terms.rate"),
        ("product.terms_confirmed", "terms.other.*"),
        ("complaint.resolved", "compensation.description"),
        ("followup.reassigned", "reason"),
        ("followup.completed", "note"),
        ("consultation.opened", "question"),
        ("client.personal_data_recorded", "fields.*"),
    ],
)
def test_the_free_texts_of_finding_3_are_sealed(event_type: str, path: str) -> None:
    assert _where_every_string_ends_up()[event_type][path] == "sealed"


def test_the_completion_outcome_is_a_closed_code() -> None:
    assert _where_every_string_ends_up()["followup.completed"]["outcome"] == CLOSED


def test_every_example_payload_keeps_no_personal_string_in_clear_once_sealed() -> None:
    """The declaration at work: each type's example sealed as intake and followup seal it;
    every string under a personal path is ciphertext, and the sealed form reads back."""
    for event_type in sorted(PAYLOAD_MODELS):
        data = parse_payload(event_type, example_data(event_type)).model_dump(
            mode="json", exclude_none=True
        )
        paths = PERSONAL_FIELDS[event_type]
        sealed = seal_paths(data, paths, KEY, client_id="C-1")
        clear_left: list[str] = []

        def check(value: Any, path: str, clear_left: list[str] = clear_left) -> Any:
            strings = (
                [value]
                if isinstance(value, str)
                else list(value.values())
                if isinstance(value, dict)
                else list(value)
                if isinstance(value, list)
                else []
            )
            clear_left.extend(path for s in strings if isinstance(s, str) and not is_sealed(s))
            return value

        map_personal(sealed, paths, check)
        assert clear_left == [], (event_type, clear_left)
        parse_payload(event_type, sealed, stored=True)  # what every reader does


def test_a_sealed_value_is_refused_in_submitted_data_but_read_back_when_stored() -> None:
    data = example_data("consultation.opened") | {"question": "x" * 3000}
    sealed = seal_paths(data, ("question",), KEY, client_id="C-1")
    assert len(sealed["question"]) > 4000  # beyond the clear limit (finding 4)
    parse_payload("consultation.opened", sealed, stored=True)
    with pytest.raises(ValueError, match="reserved"):
        parse_payload("consultation.opened", sealed)
    with pytest.raises(ValueError, match="reserved"):
        parse_payload(
            "client.identity_verified",
            example_data("client.identity_verified") | {"verification_ref": "bl:pii:v1:k:a:b"},
        )
