"""The relay builds its messages from the stored envelope without validating it again (#12):
the message value and headers must stay byte for byte what they were when the relay
validated each envelope into a :class:`RecordedEvent` first (consumers route by the headers,
the audit ledger and the readers parse the value)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from tests.support.batching import SendsInBatches
from tests.support.examples import EXAMPLE_CLIENT_ID, EXAMPLE_JOURNEY, EXAMPLE_SHELF
from tests.support.outbox import ListOutbox

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.ports import PendingPublication
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.kafka.wire import (
    Headers,
    encode_event,
    event_headers,
    stored_event_headers,
)

pytestmark = pytest.mark.unit

TOPIC = "branchline.test.relay"


def stored_envelopes() -> list[dict[str, Any]]:
    """The catalogue's example journey and shelf as an event store returns them: written as
    pydantic renders a recorded event, read back from jsonb (orjson, keys reordered)."""
    envelopes = []
    for version, step in enumerate((*EXAMPLE_JOURNEY, *EXAMPLE_SHELF), start=1):
        subject_id = step.subject_id or EXAMPLE_CLIENT_ID
        event = RecordedEvent.model_validate(
            {
                "event_id": str(uuid.uuid4()),
                "type": step.type,
                "occurred_at": step.occurred_at,
                "recorded_at": datetime(2026, 12, 4, 5, 0, version % 60, tzinfo=UTC),
                "source": "intake" if version % 3 else "followup",
                "actor": {"id": step.actor_id, "role": step.actor_role},
                step.subject_field: subject_id,
                "channel": step.channel if step.subject_id is None else None,
                "stream_id": f"{step.subject_field}-{subject_id}",
                "stream_version": version,
                "synthetic": version % 5 == 0,
                "data": dict(step.data),
            }
        )
        as_jsonb = orjson.loads(event.model_dump_json())
        envelopes.append(dict(sorted(as_jsonb.items(), key=lambda kv: (len(kv[0]), kv[0]))))
    return envelopes


def test_the_headers_are_those_of_the_validated_event() -> None:
    envelopes = stored_envelopes()
    assert len({e["type"] for e in envelopes}) > 10  # a corpus, not a sample of one type
    for position, envelope in enumerate(envelopes, start=1):
        for requeued in (False, True):
            validated = event_headers(
                RecordedEvent.model_validate(envelope), position, requeued=requeued
            )
            assert stored_event_headers(envelope, position, requeued=requeued) == validated


def test_an_envelope_without_its_routing_fields_is_refused() -> None:
    envelope = stored_envelopes()[0]
    for field in ("event_id", "type", "source"):
        with pytest.raises(ValueError, match="event_id, type or source"):
            stored_event_headers({k: v for k, v in envelope.items() if k != field}, 1)
    with pytest.raises(ValueError, match="event_id, type or source"):
        stored_event_headers(envelope | {"type": 7}, 1)


class RecordingProducer(SendsInBatches):
    """Records every message sent; acknowledges at once into a broker listing the topic."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes, Headers]] = []
        metadata = SimpleNamespace(topics=lambda: {TOPIC})

        async def fetch_all_metadata() -> SimpleNamespace:
            return metadata

        self.client = SimpleNamespace(fetch_all_metadata=fetch_all_metadata)

    async def send(
        self, topic: str, *, value: bytes, key: bytes, headers: Headers, **_: object
    ) -> asyncio.Future[SimpleNamespace]:
        assert topic == TOPIC
        self.messages.append((value, key, headers))
        future: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(partition=0, offset=len(self.messages)))
        return future


async def test_the_relay_sends_the_messages_it_sent_when_it_validated_each_envelope() -> None:
    rows = [
        PendingPublication(n, TOPIC, f"key-{n}", 1000 + n, envelope, requeued=n % 4 == 0)
        for n, envelope in enumerate(stored_envelopes(), start=1)
    ]
    producer = RecordingProducer()
    relay = OutboxRelay(
        pool=cast("asyncpg.Pool[Any]", None),
        producer=cast("AIOKafkaProducer", producer),
        store_name="test",
        batch_size=len(rows),
        outbox=ListOutbox(rows),
    )
    assert await relay.publish_once() == len(rows)
    # What publish_once sent before #12's change: the envelope validated, then its headers.
    before = [
        (
            encode_event(row.envelope),
            row.message_key.encode(),
            event_headers(
                RecordedEvent.model_validate(row.envelope),
                row.global_position,
                requeued=row.requeued,
            ),
        )
        for row in rows
    ]
    assert producer.messages == before
