"""Seeing a gap the moment it arrives: a position jump in a stream.

Every event belongs to a stream of its store (a client's, a task's) whose versions count up
by one, and a stream's events share one message key, hence one partition, and reach a
consumer in the order they were stored. An event whose version is more than one past the
last version the consumer saw of its stream therefore skips events it has not seen: the
broker lost them (or they were dead-lettered). The consumer says so at once (metric, log
line) and triggers the same repair as its periodic self-check, instead of waiting for it.

Why streams and not the stores' global positions: a consumer receives a store's events over
several partitions, interleaved, and a rolled-back transaction burns global positions for
good, so a jump in global positions proves nothing. An event older than the last one seen (a
re-publish) is not a jump. Streams the consumer has not seen since it started are not judged
(the periodic self-check covers what lies before).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from prometheus_client import Counter

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import SourcePosition

log = logging.getLogger(__name__)

POSITION_JUMPS = Counter(
    "branchline_consumer_position_jumps_total",
    "Events that skipped versions of their stream the consumer had not seen (a gap, seen "
    "at once); each triggers the consumer's self-repair",
    ["consumer"],
)


class PositionJumps:
    """The last version seen of each stream (the ``max_streams`` most recent), and what to do
    on a jump."""

    def __init__(
        self,
        consumer: str,
        on_jump: Callable[[], None] | None = None,
        *,
        max_streams: int = 100_000,
    ) -> None:
        self._consumer = consumer
        self._on_jump = on_jump
        self._max_streams = max_streams
        self._last: OrderedDict[str, int] = OrderedDict()

    def seen(self, event: RecordedEvent, position: SourcePosition | None = None) -> bool:
        """Record ``event``; True when it jumped past versions of its stream not seen."""
        key = f"{event.source}/{event.stream_id}"
        last = self._last.get(key)
        if last is not None and event.stream_version <= last:
            return False  # a redelivery or a re-publish: older, not a gap
        self._last[key] = event.stream_version
        self._last.move_to_end(key)
        if len(self._last) > self._max_streams:
            self._last.popitem(last=False)
        if last is None or event.stream_version == last + 1:
            return False
        POSITION_JUMPS.labels(self._consumer).inc()
        log.warning(
            "consumer received a position jump; checking the stores for what it skipped",
            extra={
                "consumer": self._consumer,
                "stream_id": event.stream_id,
                "expected_version": last + 1,
                "received_version": event.stream_version,
                "source": position.source if position else event.source,
                "global_position": position.global_position if position else None,
            },
        )
        if self._on_jump is not None:
            self._on_jump()
        return True
