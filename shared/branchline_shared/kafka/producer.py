"""Producers: acks=all; the idempotent producer only where the broker supports it (ADR-0003)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from branchline_shared.kafka.partitioning import default_partition
from branchline_shared.settings import CommonSettings


def make_producer(settings: CommonSettings, *, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        linger_ms=2,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
        max_request_size=4 * 1024 * 1024,
        # aiokafka's default partitions, computed in less Python (#12): the same partition for
        # every key (kafka.partitioning), so per-key order is kept across producers.
        partitioner=default_partition,
    )
