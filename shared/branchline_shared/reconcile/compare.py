"""Comparing an event store's log with what a consumer applied (pure, no I/O).

An event counts for a consumer once its writing transaction has ended (the store's log reader
only returns those, gap-safe) and its outbox row was published more than a grace period ago:
younger ones are *in flight*, not missing. Differences, per consumer:

- *missing*: in a store, published, not applied, not in the consumer's dead-letter topic;
- *dead-lettered*: in a store, not applied, in the consumer's dead-letter topic (a replay
  after a fix applies it: ``branchline dlq replay``);
- *extra*: applied, but in no store (nobody accepted it);
- *out of order*: applied after a later version of its own stream (a client's events are
  keyed by client id, so this only happens when something was re-published late) and not
  repaired since.

Not a difference, told as information (#12): *late*, an event applied after a later version
of its stream that needs nobody: the consumer put it in source order itself (the followup
worker re-projects the client from its journal in the unit that applies a late event,
ADR-0014: :attr:`AppliedEvent.source_ordered`), or the consumer's arrival order is its own
record (the audit ledger, append-only and hash-chained: the order of recording, not of the
stores, docs/reliability.md; ``compare(late_is_record=True)``). Counted as out of order for
ever, one late event kept a reconcile from ever reporting 0 differences.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from branchline_shared.events.catalogue.event_types import EventType
from branchline_shared.eventstore.ports import LogPosition


@dataclass(frozen=True)
class StoreEvent:
    """One event of a store's log, as reconcile needs it."""

    source: str
    event_id: uuid.UUID
    log_position: LogPosition
    stream_id: str
    stream_version: int
    client_id: str
    topic: str
    in_flight: bool
    type: str = ""
    """The event's type, where the store's read named it (:data:`ORDER_FREE_TYPES`)."""


ORDER_FREE_TYPES = frozenset({EventType.CLIENT_DATA_READ.value})
"""Events whose order changes no consumer's state (#12): a ``client.data_read`` is a record
about the client on a reads stream of its own (``reads-<client>`` in intake's store), which
the followup worker only marks applied (never journalled, never projected) and the audit
ledger records by arrival. One applied after a later read of its stream is *late*, never
*out of order* (nothing could put it in order, and nothing needs it)."""


@dataclass(frozen=True)
class AppliedEvent:
    """One event a consumer applied: ``seq`` is the order it applied them in (ledger
    position, read-model apply sequence); source and position when the relay named them."""

    event_id: uuid.UUID
    seq: int | None = None
    source: str | None = None
    global_position: int | None = None
    source_ordered: bool = False
    """The consumer's state holds this event as if applied in its stream's order, whenever it
    arrived: the followup worker keeps a client's events in its journal and, in the unit that
    applies one late, projects the client again in source order (ADR-0014, #12)."""


@dataclass(frozen=True)
class SourceProgress:
    """How far a consumer got in one store's log."""

    source: str
    events: int
    applied: int
    contiguous_to: LogPosition | None
    """The last log position up to which every event of the store is applied (gap-safe)."""
    last_global_position: int | None
    """The highest global position of this store the consumer recorded applying."""


@dataclass
class ConsumerReport:
    consumer: str
    applied: int = 0
    in_flight: int = 0
    missing: list[StoreEvent] = field(default_factory=list)
    dead_lettered: list[StoreEvent] = field(default_factory=list)
    extra: list[uuid.UUID] = field(default_factory=list)
    out_of_order: list[uuid.UUID] = field(default_factory=list)
    """Applied after a later version of its stream and not repaired: a difference."""
    late: list[uuid.UUID] = field(default_factory=list)
    """Applied after a later version of its stream, repaired or the consumer's own record of
    arrival: information, not a difference (#12)."""
    progress: list[SourceProgress] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict, compare=False)
    """How many of each kind (:data:`KINDS`) were found, where the lists above keep only
    examples of them (``branchline reconcile`` keeps at most
    ``reconcile_findings_kept`` a kind, #12); a kind not named here: its list is all. Not
    compared: two reports are equal when their lists are."""

    def count(self, kind: str) -> int:
        """How many of ``kind`` (:data:`KINDS`) were found, kept as examples or not."""
        return self.totals.get(kind, len(getattr(self, kind)))

    @property
    def differences(self) -> int:
        return (
            self.count("missing")
            + self.count("dead_lettered")
            + self.count("extra")
            + self.count("out_of_order")
        )


KINDS = ("missing", "dead_lettered", "extra", "out_of_order", "late")
"""The kinds of finding, each a list of :class:`ConsumerReport`."""


def compare(
    consumer: str,
    stores: Mapping[str, Sequence[StoreEvent]],
    applied: Iterable[AppliedEvent],
    *,
    dead_lettered: frozenset[uuid.UUID] = frozenset(),
    own_sources: frozenset[str] = frozenset(),
    late_is_record: bool = False,
) -> ConsumerReport:
    """``stores``: each store's events in log order. ``own_sources``: events a consumer
    creates itself (the ledger's ``audit.*`` entries) are neither extra nor compared.
    ``late_is_record``: the consumer's order of applying is its record (the ledger), so an
    event applied late is *late*, never *out of order*."""
    report = ConsumerReport(consumer)
    by_id: dict[uuid.UUID, AppliedEvent] = {}
    for entry in applied:
        if entry.source in own_sources:
            continue
        by_id[entry.event_id] = entry
    report.applied = len(by_id)
    known: dict[uuid.UUID, StoreEvent] = {}
    for source, events in stores.items():
        contiguous: LogPosition | None = None
        gap = False
        applied_here = 0
        for event in events:
            known[event.event_id] = event
            if event.event_id in by_id:
                applied_here += 1
                if not gap:
                    contiguous = event.log_position
                continue
            gap = True
            if event.in_flight:
                report.in_flight += 1
            elif event.event_id in dead_lettered:
                report.dead_lettered.append(event)
            else:
                report.missing.append(event)
        positions = [
            a.global_position
            for a in by_id.values()
            if a.source == source and a.global_position is not None
        ]
        report.progress.append(
            SourceProgress(
                source=source,
                events=len(events),
                applied=applied_here,
                contiguous_to=contiguous,
                last_global_position=max(positions) if positions else None,
            )
        )
    report.extra = sorted(
        (event_id for event_id in by_id if event_id not in known), key=lambda i: i.hex
    )
    report.out_of_order, report.late = _applied_late(by_id, known, late_is_record=late_is_record)
    return report


def _applied_late(
    applied: Mapping[uuid.UUID, AppliedEvent],
    known: Mapping[uuid.UUID, StoreEvent],
    *,
    late_is_record: bool,
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Events applied after a later version of their stream had been applied: those not
    repaired (out of order), and those that need nobody (late). One is repaired when it and
    every later version applied before it are :attr:`~AppliedEvent.source_ordered`: the
    consumer saw the later ones when it applied it (an event applied before the followup
    journal existed was not there to see, and nothing re-projected). An event of
    :data:`ORDER_FREE_TYPES` counts as put in order: its order matters to nobody."""
    streams: dict[str, list[tuple[int, int, uuid.UUID]]] = {}
    for event_id, entry in applied.items():
        event = known.get(event_id)
        if event is None or entry.seq is None:
            continue
        streams.setdefault(event.stream_id, []).append((event.stream_version, entry.seq, event_id))
    out_of_order: list[uuid.UUID] = []
    late: list[uuid.UUID] = []
    for entries in streams.values():
        walk = StreamWalk(late_is_record=late_is_record)
        for _version, seq, event_id in sorted(entries, reverse=True):
            ordered = applied[event_id].source_ordered or known[event_id].type in ORDER_FREE_TYPES
            verdict = walk.judge(seq, ordered=ordered)
            if verdict is LATE:
                late.append(event_id)
            elif verdict is OUT_OF_ORDER:
                out_of_order.append(event_id)
    return sorted(out_of_order, key=lambda i: i.hex), sorted(late, key=lambda i: i.hex)


LATE = "late"
OUT_OF_ORDER = "out of order"


class StreamWalk:
    """One stream's applied versions judged from its highest version down (pure, #12): what
    it carries is two apply sequences, however many versions the stream has, so a walk of
    the stores by their stream index can judge a stream of millions of versions a page at a
    time (``branchline reconcile``), with the verdicts of judging it whole in apply order.

    An event is applied late when a higher version of its stream was applied before it (a
    lower apply sequence); it is *out of order* unless the consumer's order is its record
    (``late_is_record``) or it was put in order (``ordered``: :attr:`AppliedEvent.source_ordered`
    or :data:`ORDER_FREE_TYPES`) and so was every higher version applied before it (an
    unordered one applied before it was not there to see)."""

    def __init__(self, *, late_is_record: bool) -> None:
        self._late_is_record = late_is_record
        self._first: int | None = None  # the lowest apply sequence of a higher version
        self._first_unordered: int | None = None  # ... of a higher version not put in order

    def judge(self, seq: int, *, ordered: bool) -> str | None:
        """The verdict on the next lower version applied (``seq``: when): None (in order),
        :data:`LATE` or :data:`OUT_OF_ORDER`."""
        verdict: str | None = None
        if self._first is not None and self._first < seq:
            unordered_before = self._first_unordered is not None and self._first_unordered < seq
            if self._late_is_record or (ordered and not unordered_before):
                verdict = LATE
            else:
                verdict = OUT_OF_ORDER
        self._first = seq if self._first is None else min(self._first, seq)
        if not ordered:
            self._first_unordered = (
                seq if self._first_unordered is None else min(self._first_unordered, seq)
            )
        return verdict
