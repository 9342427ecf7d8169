"""The followup worker rewinds when the broker lost its log.

A broker that restarts empty (tansu's memory store) does not answer OFFSET_OUT_OF_RANGE to a
consumer whose position lies past its new log end: the Faust consumer would wait there for
messages that now carry lower offsets, and drop them as already read (Faust skips offsets
below the one it last read). So the worker compares its positions with the high watermark of
its fetches, like the audit consumer does, and for the partitions past the end forgets what
Faust remembers about them (read, acked and committed offsets) and reads them from the
beginning. Then its self-repair reconciles with the event stores, because what the broker
lost before we read it is only there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from branchline_shared.kafka.consuming import LOG_LOST, partitions_past_log_end

log = logging.getLogger(__name__)


async def partitions_to_rewind(app: faust.App) -> list[Any]:
    consumer = app.consumer
    assignment = consumer.assignment()
    positions: dict[Any, int] = {}
    for tp in assignment:
        position = await consumer.position(tp)
        if position is not None:
            positions[tp] = int(position)
    highwaters = {tp: consumer.highwater(tp) for tp in positions}
    return partitions_past_log_end(positions, highwaters)


async def rewind(app: faust.App, partitions: list[Any]) -> None:
    """Read ``partitions`` again from the beginning, as if newly assigned."""
    consumer = app.consumer
    for tp in partitions:
        await consumer.seek(tp, 0)
        # What Faust remembers of the old log would make it drop the new log's messages
        # (offsets below the last read) and never commit (offsets below the last commit):
        # the same cleanup Faust does for a revoked partition.
        for state in ("_gap", "_acked", "_acked_index", "_read_offset", "_committed_offset"):
            getattr(consumer, state).pop(tp, None)


async def rewind_when_log_lost(
    app: faust.App,
    consumer_name: str,
    *,
    on_lost: Callable[[], Awaitable[None]] | None = None,
    interval_s: float = 2.0,
) -> None:
    """Until cancelled: check every ``interval_s`` and rewind what lies past the log end."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            lost = await partitions_to_rewind(app)
        except Exception as exc:  # consumer between assignments or reconnecting: next time
            log.debug("log-end check skipped", extra={"error": repr(exc)})
            continue
        if not lost:
            continue
        LOG_LOST.labels(consumer_name).inc()
        log.warning(
            "broker log shorter than our position; rewinding and reconciling",
            extra={"consumer": consumer_name, "partitions": [str(tp) for tp in lost]},
        )
        await rewind(app, lost)
        if on_lost is not None:
            await on_lost()
