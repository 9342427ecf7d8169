"""How long a consumer's fetch may wait at the broker for records (end-to-end latency).

A fetch that finds nothing waits up to ``fetch_max_wait_ms`` at the broker before it answers
empty; records produced meanwhile should end the wait, but the dev broker (tansu) answers
only when the wait is over, so each hop of an idle pipeline costs up to that long. aiokafka
defaults to 500 ms; Faust hard-codes 1,500 ms for its workers. Branchline's consumers ask
for ``kafka_fetch_max_wait_ms`` (50 ms by default): a few more empty fetches while idle, a
record picked up within that time of its arrival. Under load fetches come back full at once
and the setting does not matter.
"""

from __future__ import annotations

from typing import Any

_installed: dict[str, int] = {}


def install_faust_fetch_wait(fetch_max_wait_ms: int) -> None:
    """Make Faust's worker consumers (this process) use ``fetch_max_wait_ms``."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _installed["ms"] = fetch_max_wait_ms
    if getattr(AIOKafkaConsumerThread, "_branchline_fetch_wait", False):
        return
    original = AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher.
        consumer._fetch_max_wait_ms = _installed["ms"]
        return consumer

    setattr(AIOKafkaConsumerThread, "_create_worker_consumer", create_worker_consumer)  # noqa: B010
    setattr(AIOKafkaConsumerThread, "_branchline_fetch_wait", True)  # noqa: B010
