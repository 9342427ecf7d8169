"""The client journal's row (:func:`.client_journal.journal_row`): what every encoder of the
``jsonb`` column makes of its envelope (the pool's text codec and the rebuild's binary one,
``orjson.dumps``; a collected statement's rows argument) is the event's JSON dump, and reads
back as the event (#12: a cheaper encoding of the envelope, pydantic's JSON text as an orjson
fragment, was measured in Round 30 and not landed; these hold for either)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.integration.followup.harness import generate_history

from branchline_followup.adapters import client_journal
from branchline_followup.adapters.json_rows import rows_argument
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition

_END = datetime(2026, 11, 20, tzinfo=UTC)
_EVENTS = generate_history(30, end=_END, span=timedelta(days=30)).events


def _encoded(value: Any) -> Any:
    """What the column receives, through each of its encoders: the pool's text codec and the
    rebuild's binary one (``orjson.dumps``), and a collected statement's rows argument."""
    text = orjson.loads(orjson.dumps(value))
    row = orjson.loads(rows_argument([[value]]))[0][0]
    assert row == text
    return text


def test_every_kept_event_of_a_history_is_stored_as_its_json_dump() -> None:
    assert len({e.type for e in _EVENTS}) > 10  # the history's kinds of event, not a few
    for n, event in enumerate(_EVENTS):
        position = SourcePosition("intake", n) if n % 2 else None
        row = client_journal.journal_row(event, position)
        assert _encoded(row[5]) == event.model_dump(mode="json"), event.type
        assert row[:5] == (
            event.event_id,
            event.client_id,
            "intake" if n % 2 else event.source,
            n if n % 2 else None,
            row[4],
        )
        assert RecordedEvent.model_validate(_encoded(row[5])) == event


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=("Cs",)), max_size=6), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.text(max_size=8), _JSON, max_size=5), which=st.integers(0, 10**6))
def test_an_events_any_data_is_stored_as_its_json_dump(data: dict[str, Any], which: int) -> None:
    event = _EVENTS[which % len(_EVENTS)].model_copy(update={"data": data})
    row = client_journal.journal_row(event, None)
    assert _encoded(row[5]) == event.model_dump(mode="json")
