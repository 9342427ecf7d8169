"""The source order of a client's events (#13, ADR-0014): the order a rebuild applies them in.

A rebuild merges the stores' logs by the millisecond each event was recorded, then by store
(intake before followup), then by log position (``adapters/store_replay.py``). The read models
must equal that rebuild whatever order the broker delivered the events in, so an event that
arrives after a later event of the same client *from the same store* makes the client be
projected again in this order. Across stores no order is promised by the broker (followup's own
events are recorded while it applies intake's), and the projection is written to give the same
result either way (docs/followup.md "Order"); within one store, it is not.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

STORE_ORDER = ("intake", "followup")
"""The stores in the order a rebuild merges them within one millisecond; another store's
events come after these (by name)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def recorded_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, rounded half up, as the rebuild's merge rounds them."""
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return (micros + 500) // 1000


@dataclass(frozen=True)
class SourcePlace:
    """Where an applied event of a client sits in its store."""

    event_id: uuid.UUID
    source: str
    recorded_ms: int
    global_position: int | None
    """``None``: applied without its position (then never found late, and placed after the
    store's positioned events of the same millisecond)."""


def source_key(place: SourcePlace) -> tuple[int, int, str, int, str]:
    """The sort key of the rebuild's merge (ties broken by event id, deterministically)."""
    rank = STORE_ORDER.index(place.source) if place.source in STORE_ORDER else len(STORE_ORDER)
    position = sys.maxsize if place.global_position is None else place.global_position
    return (place.recorded_ms, rank, place.source, position, str(place.event_id))


def in_source_order(places: Iterable[SourcePlace]) -> list[SourcePlace]:
    return sorted(places, key=source_key)


def arrives_late(new: SourcePlace, kept: Iterable[SourcePlace]) -> bool:
    """True when an event of the same store already kept comes after ``new`` in source order
    (``kept``: the client's applied events). An event without a position cannot tell."""
    if new.global_position is None:
        return False
    here = (new.recorded_ms, new.global_position)
    return any(
        k.source == new.source
        and k.global_position is not None
        and k.event_id != new.event_id
        and (k.recorded_ms, k.global_position) > here
        for k in kept
    )
