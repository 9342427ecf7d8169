"""Producers: acks=all; the idempotent producer only where the broker supports it (ADR-0003)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from branchline_shared.kafka.partitioning import default_partition
from branchline_shared.settings import CommonSettings

BATCH_BYTES = 512 * 1024
"""The most bytes of one partition's batch (aiokafka's ``max_batch_size``, default 16 KiB).
A send into a partition whose batch is full waits until the sender has taken that batch, and
the sender has one request in flight per broker: with 16 KiB, a relay round of a few hundred
envelopes (0.5 to 1 KiB each, 4 partitions) waited out a broker round trip per 16 KiB while it
was still sending, a third of the round at 650 ev/s (#12, Round 28). 512 KiB holds the
relay's whole round (``relay_batch_size`` 500) in one batch per partition, one request per
round, and stays below Kafka's default ``message.max.bytes`` and the consumers'
``max_partition_fetch_bytes`` (1 MiB each). The buffer grows with what is appended: a small
round costs no more than before."""


def make_producer(settings: CommonSettings, *, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        linger_ms=2,
        max_batch_size=BATCH_BYTES,
        request_timeout_ms=settings.kafka_producer_request_timeout_ms,
        retry_backoff_ms=200,
        max_request_size=4 * 1024 * 1024,
        # aiokafka's default partitions, computed in less Python (#12): the same partition for
        # every key (kafka.partitioning), so per-key order is kept across producers.
        partitioner=default_partition,
    )
