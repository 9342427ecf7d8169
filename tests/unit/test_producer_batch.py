"""The relay's producer takes a whole relay round into one batch per partition (#12, Round 28).

aiokafka's ``send`` into a partition whose batch is full waits until the sender has taken that
batch, and the sender keeps one request in flight per broker: with aiokafka's default 16 KiB a
relay round of a few hundred envelopes waited out a broker round trip per 16 KiB while it was
still sending (docs/performance.md, Round 28, "The relay's publish"). A batch refuses a record
(``append`` returns None) exactly when it is full, so: the largest round the relay reads
(``relay_batch_size``), every row to one partition, with the wire's value, key and headers,
must be taken by one batch of the producer ``make_producer`` builds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.events import recorded_event

from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.wire import encode_event, stored_event_headers
from branchline_shared.settings import CommonSettings


def a_stored_envelope(n: int) -> dict[str, object]:
    event = recorded_event(
        "client.registered",
        {"client_type": "individual", "rm_id": "rm-7"},
        at=datetime(2026, 12, 6, 9, 0, tzinfo=UTC),
        client_id=f"C-{n:08d}",
        branch_id="BR-001",
        channel="walk_in",
    )
    return event.model_dump(mode="json")


async def test_a_full_relay_round_into_one_partition_fits_one_batch() -> None:
    settings = CommonSettings()
    producer = make_producer(settings, client_id="batch-test")  # never started: no broker
    try:
        batch = producer.create_batch()
        taken = 0
        for n in range(settings.relay_batch_size):
            envelope = a_stored_envelope(n)
            value = encode_event(envelope)
            assert len(value) >= 400  # an envelope as intake stores it, not a toy record
            if (
                batch.append(
                    key=f"C-{n:08d}".encode(),
                    value=value,
                    timestamp=None,
                    headers=stored_event_headers(envelope, 1_000_000 + n),
                )
                is None
            ):
                break
            taken += 1
        assert taken == settings.relay_batch_size
    finally:
        await producer.stop()


async def test_the_producers_request_timeout_is_the_setting_ten_seconds_by_default() -> None:
    """``kafka_producer_request_timeout_ms`` reaches the producer and its client (#12, Round 35:
    it was fixed at 10 s in ``make_producer``)."""
    assert CommonSettings().kafka_producer_request_timeout_ms == 10_000
    producer = make_producer(
        CommonSettings(kafka_producer_request_timeout_ms=2_500), client_id="timeout-test"
    )
    try:
        assert producer._request_timeout_ms == 2_500  # aiokafka has no public reader
        assert producer.client._request_timeout_ms == 2_500
    finally:
        await producer.stop()
