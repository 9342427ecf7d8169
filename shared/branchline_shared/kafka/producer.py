"""Producers: acks=all; the idempotent producer only where the broker supports it (ADR-0003)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

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
    )
