"""The ledger writer's index columns: the same values as :func:`index_columns`, faster (#12)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from branchline_audit.adapters.ledger import _event_uuid
from branchline_audit.domain.records import (
    IndexColumns,
    NotAnEnvelope,
    index_columns,
    index_row,
)

pytestmark = pytest.mark.unit

_ID = "2bdd4246-931e-4f16-8eb2-edf8c61806c9"
_id_texts = st.text(
    alphabet="0123456789abcdefABCDEF-{}_+ :urnid\u0660", max_size=40
) | st.uuids().map(str)


def _parsed(parse: Any, text: str) -> uuid.UUID | type[ValueError]:
    try:
        return parse(text)  # type: ignore[no-any-return]
    except ValueError:
        return ValueError


@settings(max_examples=1000, deadline=None)
@given(text=_id_texts)
@example(_ID)
@example(_ID.replace("-", ""))
@example(_ID.upper())
@example("{" + _ID + "}")
@example("urn:uuid:" + _ID)
@example("+" + _ID.replace("-", "")[1:])
@example("2-b" + _ID.replace("-", "")[2:])
@example(_ID[:-1])
@example(_ID + "0")
def test_the_writers_event_id_parse_is_uuids(text: str) -> None:
    """Whatever the text, the writer's parse gives ``uuid.UUID``'s value (equal and of
    equal hash, so duplicates and source positions match) or refuses it as it does."""
    ours, reference = _parsed(_event_uuid, text), _parsed(uuid.UUID, text)
    assert ours == reference
    if isinstance(ours, uuid.UUID):
        assert hash(ours) == hash(reference)
        assert str(ours) == str(reference)


_texts = st.none() | st.integers() | st.text(max_size=5)


@given(
    event_id=st.uuids().map(str) | st.text(max_size=5) | st.integers(),
    event_type=_texts,
    client_id=_texts,
    branch_id=_texts,
    actor=st.none() | st.text(max_size=3) | st.fixed_dictionaries({"id": _texts}),
    occurred_at=st.none()
    | st.sampled_from(["2026-12-04T18:16:37.756Z", "2026-12-04T18:16:37", "yesterday", "1"]),
)
def test_the_writers_index_row_is_index_columns(
    event_id: Any, event_type: Any, client_id: Any, branch_id: Any, actor: Any, occurred_at: Any
) -> None:
    event = {
        "event_id": event_id,
        "type": event_type,
        "client_id": client_id,
        "branch_id": branch_id,
        "actor": actor,
        "occurred_at": occurred_at,
    }
    try:
        expected: IndexColumns | None = index_columns(event)
    except NotAnEnvelope:
        expected = None
    if expected is None:
        with pytest.raises(NotAnEnvelope):
            index_row(event, _event_uuid)
    else:
        assert IndexColumns(*index_row(event, _event_uuid)) == expected
