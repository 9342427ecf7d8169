"""A dead letter as ``branchline dlq`` reads it back: whatever a record's producer set, one
record never fails the listing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord

from branchline_shared.kafka.dead_letter_log import parse_dead_letter, record_time

pytestmark = pytest.mark.unit


def record(timestamp: int, headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="branchline.dlq.followup",
        partition=0,
        offset=7,
        timestamp=timestamp,
        timestamp_type=0,
        key=b"C-1",
        value=b"{}",
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=2,
        headers=headers,
    )


def test_a_dead_letter_carries_its_reason_source_and_time() -> None:
    event_id = uuid.uuid4()
    letter = parse_dead_letter(
        "followup",
        record(
            1_764_900_000_000,
            [
                ("event_id", str(event_id).encode()),
                ("type", b"client.registered"),
                ("dlq_reason", b"D-04: schema"),
                ("dlq_source_topic", b"branchline.events"),
                ("dlq_source_partition", b"3"),
                ("dlq_source_offset", b"not a number"),
            ],
        ),
    )
    assert letter.dead_lettered_at == datetime(2025, 12, 5, 2, 0, tzinfo=UTC)
    assert (letter.reason, letter.event_id, letter.event_type) == (
        "D-04: schema",
        event_id,
        "client.registered",
    )
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "branchline.events",
        3,
        None,
    )
    assert letter.ref == "followup:0:7"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (2**63 - 1, datetime.max.replace(tzinfo=UTC)),
        (10**17, datetime.max.replace(tzinfo=UTC)),
        (-(2**63), datetime.min.replace(tzinfo=UTC)),
        (-1, datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),  # Kafka's "none"
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_any_64_bit_timestamp_is_read_without_failing(timestamp: int, expected: datetime) -> None:
    """A producer may set any 64-bit timestamp; before, one past a datetime's range raised
    and failed the whole listing."""
    assert record_time(timestamp) == expected
    letter = parse_dead_letter("audit", record(timestamp, []))
    assert letter.dead_lettered_at == expected
    assert letter.reason == "(no reason recorded)"
    assert letter.dead_lettered_at.isoformat()
