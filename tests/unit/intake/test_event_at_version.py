"""An accepted event takes its stream version without pydantic's general copy (#12): the
copy is the very object ``model_copy(update={"stream_version": ...})`` makes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from intake_story import submitted_registrations

from branchline_intake.application.outcomes import Accepted
from branchline_intake.application.submit import IntakeContext, at_version, submit_events
from branchline_intake.domain import RecordedDecider
from branchline_shared.clock import FixedClock
from branchline_shared.crypto.keystore import InMemoryClientKeyStore
from branchline_shared.events.envelope import (
    Actor,
    RecordedEvent,
    Submitter,
    client_stream_id,
)
from branchline_shared.eventstore.memory import InMemoryEventStore

pytestmark = pytest.mark.unit

_NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _recorded(**extra: Any) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type="client.registered",
        schema_version=1,
        occurred_at=_NOW,
        recorded_at=_NOW,
        source="intake",
        actor=Actor(id="s-1", role="teller"),
        client_id="C-1",
        branch_id="BR-1",
        stream_id=client_stream_id("C-1"),
        stream_version=0,
        data={"client_type": "individual", "rm_id": "rm-1"},
        **extra,
    )


@pytest.mark.parametrize(
    "event",
    [
        _recorded(),
        _recorded(correlation_id="corr-1", submitted_by=Submitter(sub="b-1", roles=("x",))),
        RecordedEvent.model_construct(**_recorded().__dict__),
    ],
)
def test_the_copy_is_model_copys(event: RecordedEvent) -> None:
    made = at_version(event, 7)
    expected = event.model_copy(update={"stream_version": 7})
    assert made == expected
    assert type(made) is type(expected)
    assert made.model_fields_set == expected.model_fields_set
    assert made.model_dump_json() == expected.model_dump_json()
    assert made.__pydantic_extra__ == expected.__pydantic_extra__
    assert made.__pydantic_private__ == expected.__pydantic_private__
    assert event.stream_version == 0  # the original is left as it was
    assert made.data is event.data  # shallow, as model_copy


def test_accepted_events_are_not_copied_by_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    def copied(self: Any, **kwargs: Any) -> Any:
        raise AssertionError("model_copy called")

    ctx = IntakeContext(
        store=InMemoryEventStore(),
        clock=FixedClock(_NOW),
        decider=RecordedDecider(),
        topic="t",
        keys=InMemoryClientKeyStore(),
        hash_key=b"k" * 32,
    )
    items = submitted_registrations(3, _NOW)
    monkeypatch.setattr(RecordedEvent, "model_copy", copied)
    outcomes = asyncio.run(submit_events(ctx, items, submitted_by=Actor(id="b", role="admin")))
    assert [type(o) for o in outcomes] == [Accepted] * 3
    assert [o.position.stream_version for o in outcomes if isinstance(o, Accepted)] == [1, 1, 1]
