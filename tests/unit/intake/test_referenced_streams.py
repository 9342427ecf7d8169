"""The streams a candidate's rules read (D-13, D-14, D-16) are found from its typed payload,
without dumping it (#12), and are the ones the payload's dump names."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.related import referenced_stream_ids, referenced_streams
from branchline_shared.events import catalogue as c

pytestmark = pytest.mark.unit

_AT = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)

PAYLOADS: list[c.EventPayload] = [
    c.ProductRecommended(product_id="P-1", product_risk="R3"),
    c.ProductRecommended(product_id="P-2"),
    c.ProductSold.model_validate({"product_id": "P-3", "amount": "100.00"}),
    c.ClientRegistered.model_validate({"client_type": "individual", "rm_id": "rm-1"}),
]


def _event(payload: c.EventPayload, actor_id: str | None) -> DomainEvent:
    return DomainEvent.of(payload, _AT, event_id=uuid.uuid4(), actor_id=actor_id)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("actor_id", ["rm-42", None])
def test_the_streams_are_those_the_dump_names(
    payload: c.EventPayload, actor_id: str | None
) -> None:
    event = _event(payload, actor_id)
    assert referenced_streams(event) == referenced_stream_ids(event.type, event.data(), actor_id)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_the_payload_is_not_dumped(
    payload: c.EventPayload, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = _event(payload, "rm-42")
    expected = referenced_stream_ids(event.type, event.data(), "rm-42")

    def dumped(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the payload was dumped")

    monkeypatch.setattr(type(payload), "model_dump", dumped)
    monkeypatch.setattr(DomainEvent, "data", dumped)
    assert referenced_streams(event) == expected
