"""Rebuild the read models from the event log, blue/green.

1. A fresh schema ``fu_rebuild_<n>`` gets empty copies of the live tables.
2. Every event of the topics, from the beginning up to the end offsets captured at the start,
   is applied to it by the same :func:`project` the worker runs, in batches (one transaction
   per batch; an event the worker dead-lettered is skipped here too: a batch that fails is
   applied again with a savepoint per event, as the worker falls back to one event at a time).
   Meanwhile the live worker, timer runner and API go on with the live schema. Then, still
   without the swap lock, it catches up to the topics' current ends, round after round, until
   what is left is less than a batch: the swap then holds the lock for a short tail only (#12:
   under load the whole tail accumulated during the rebuild was applied under the lock, every
   live writer waiting meanwhile). Throughout, each stream's versions are applied in order
   (:class:`TopicOrder`, #12): an event re-queued after later versions of its stream is
   applied before them, not late again.
3. The swap, one transaction: take the swap lock exclusively, waiting a bounded time and
   retrying (live writers finish their current transaction and wait; a wait that would not
   end is reported, not endured), catch up to the topics' *current* end offsets and with the
   followup events not yet on Kafka (the outbox), make the clients' stage changes by time that
   are due by the service's clock (what the live timer runner did or is about to do), then
   rename the live schema away and the new one into its place. Writers resume on the new
   tables; whatever they apply again is already applied by id. The API kept serving the old
   tables until that commit.
4. The retired schema is dropped (or kept, for comparison).

A rebuild run as a process of its own (the command) may settle its heap after each batch
(``settle_heap``): what survived the batch is collected once and frozen, so the collector's
oldest generation no longer walks the process's start-up heap and the copy's growing memory
(applied ids, facts, open tasks) again and again (#12); all of it is unfrozen when the rebuild
ends.

A rebuild that fails before its swap commits (the swap lock stayed busy, the swap was
abandoned, the broker or the database failed) drops the schema it filled: nothing resumes from
it (a new rebuild starts a new one), and each left behind held a whole copy of the read models.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.application.projector import (
    Projection,
    apply_client_stage_changes,
    locks_client,
    mark_only,
    may_open_tasks,
    only_marked,
    project,
)
from branchline_followup.application.rebuild_routes import envelope_fields
from branchline_followup.application.task_creations import PendingCreations
from branchline_followup.domain import FollowupPolicy
from branchline_followup.domain.stream_order import StreamOrder
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.plain_messages import plain_event, plain_payload
from branchline_shared.events.typed import Decoded, UnreadablePayload, decode
from branchline_shared.kafka.consuming import is_transient
from branchline_shared.kafka.wire import (
    PoisonEvent,
    SourcePosition,
    decode_current_event,
    source_position,
)

Progress = Callable[[int], None]
"""Called with how many more events were handled."""


class Replayed(Protocol):
    """One message of the log being replayed."""

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...

    @property
    def from_store(self) -> bool:
        """Read from one of Branchline's own event stores (``--from-stores``), not a topic."""
        ...


Envelope = dict[str, object]
"""A message's envelope as read for its order and route
(:func:`.rebuild_routes.envelope_fields`)."""

Placed = tuple[Replayed, Envelope | None]
"""A message with its envelope as :meth:`TopicOrder.placed` read it (None: no JSON object)."""


class EventSource(Protocol):
    async def start(self) -> int: ...

    def messages(self) -> AsyncIterator[Replayed]: ...

    async def extend_to_current_end(self) -> int: ...

    async def stop(self) -> None: ...


class RebuildTarget(Protocol):
    """The fresh copy of the read models a rebuild fills and swaps in (ADR-0013)."""

    @property
    def schema(self) -> str: ...

    @property
    def retired(self) -> str: ...

    async def open(self) -> None:
        """Create the empty copy (the live tables' structure) and record the rebuild."""
        ...

    def batch(self) -> AbstractAsyncContextManager[FollowupUnitOfWork]:
        """One transaction writing the copy."""
        ...

    async def adopt_load(self, written: int) -> None:
        """After a :class:`PartitionedLoad` filled the copy in other processes (``written``
        applied events recorded): what this process remembered of the copy is forgotten and
        read back when needed (the catch-up and swap are this process's)."""
        ...

    async def loaded(self) -> None:
        """After the bulk of the log, before the catch-up: what the copy left out while
        loading (its deferred indexes) is built, so the copy swapped in is complete."""
        ...

    def swap(self) -> AbstractAsyncContextManager[FollowupUnitOfWork]:
        """The swap's transaction: live writers finish theirs and wait until it ends. The
        lock is waited for a bounded time, retried a bounded number of times."""
        ...

    @property
    def swap_lock_waits(self) -> int:
        """Attempts at the swap lock that timed out (reported with the result)."""
        ...

    async def store_events_not_on_kafka(self) -> list[tuple[RecordedEvent, SourcePosition]]:
        """followup's own events that may not be on Kafka yet and the rebuild has not applied
        (within the swap)."""
        ...

    async def swap_in(self, *, applied: int, skipped: int) -> None:
        """Within the swap: the copy becomes the live read models, the old ones retired."""
        ...

    async def close(self) -> None: ...

    async def drop_retired(self) -> None: ...

    async def discard(self) -> None:
        """After a failure before the swap committed: the copy is dropped (the live read
        models were not touched)."""
        ...


@dataclass(frozen=True)
class LoadResult:
    applied: int
    skipped: int
    written: int
    """Applied events recorded in the copy (:meth:`RebuildTarget.adopt_load`)."""


class PartitionedLoad(Protocol):
    """The main phase in N processes (``--processes``, #12): each applies the clients of its
    share (:mod:`.rebuild_routes`) into the copy named ``schema``; the events of no client are
    applied by every one. Returns when all have committed their last batch; raises if any
    failed (the caller then discards the copy: never a half result swapped in)."""

    async def load(
        self, schema: str, messages: AsyncIterator[Placed], on_progress: Progress | None
    ) -> LoadResult:
        """``messages``: each with its envelope as read for the order (:meth:`TopicOrder.placed`:
        routed by it, not parsed again)."""
        ...


@dataclass(frozen=True)
class RebuildResult:
    schema: str
    total: int
    applied: int
    skipped: int
    caught_up: int
    retired: str | None
    swap_lock_waits: int = 0
    """Attempts at the swap lock that timed out before one succeeded (live writers held it)."""


CATCH_UP_ROUNDS = 5
"""Catch-up rounds before the swap at most (a source that grows faster than the rebuild
applies is swapped anyway, with what is left applied under the lock)."""


class _Heap:
    """The process's heap settled after each batch (#12), when ``enabled`` and nothing had
    frozen any of it before (a process that froze its own start-up heap is left as it is:
    what it froze could not be told apart when unfreezing).

    The collector's oldest generation is collected when it has grown by a quarter, walking
    every object it holds: the start-up heap (≈ 124,000 objects in ``branchline``'s process)
    and the rebuild's own memory, which grows with the rebuild (applied ids, facts, open tasks,
    up to its bounds). After a batch, :meth:`settle` collects once what is not frozen yet
    (the batch's survivors: cyclic garbage among them is freed, not frozen) and freezes the
    rest; frozen objects are still freed by reference counting. :meth:`release` unfreezes
    everything when the rebuild ends (a cycle among them becomes collectable again).

    From the first settling on, the youngest generation is collected only after
    :data:`YOUNG_THRESHOLD` net allocations rather than the default 700 (#12): a batch's
    survivors were otherwise walked by about 23 young and 1.5 middle collections per batch
    of 500 events before the settling walked them once more; now the settling is about the
    only walk (what a batch allocates and keeps stays far below the threshold; cyclic garbage
    waits for the settling, at most one batch's). :meth:`release` restores the thresholds."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled and gc.get_freeze_count() == 0
        self._froze = False
        self._thresholds: tuple[int, int, int] | None = None

    def settle(self) -> None:
        if self._enabled:
            gc.collect()
            gc.freeze()
            self._froze = True
            if self._thresholds is None:
                self._thresholds = gc.get_threshold()
                young, middle, old = self._thresholds
                if young != 0:  # 0: automatic collection is off, and stays so
                    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)

    def release(self) -> None:
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        if self._froze:
            gc.unfreeze()
            self._froze = False


YOUNG_THRESHOLD = 50_000
"""Net allocations of tracked objects between young collections while a settled rebuild runs
(:class:`_Heap`): about three times what a batch of 500 events keeps (≈ 16,000 objects in
``bench/profile_rebuild.py``)."""


@dataclass
class _Counts:
    heap: _Heap
    applied: int = 0
    skipped: int = 0


async def rebuild_read_models(
    *,
    target: RebuildTarget,
    source: EventSource,
    policy: FollowupPolicy,
    on_total: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
    batch_size: int = 500,
    keep_retired: bool = False,
    clock: Callable[[], Awaitable[datetime]] | None = None,
    settle_heap: bool = False,
    partitioned: PartitionedLoad | None = None,
    order: TopicOrder | None = None,
) -> RebuildResult:
    """Rebuild into a new schema and swap it in; see the module's docstring. ``settle_heap``:
    freeze what survives each batch (:class:`_Heap`; for a process of its own, the command).
    ``partitioned``: the main phase (up to the end captured at the start) applied by other
    processes (:class:`PartitionedLoad`); the catch-up and the swap stay this process's.
    ``order``: the topic order with its bounds (the settings; :class:`TopicOrder`)."""
    await target.open()
    projection = Projection(policy)
    counts = _Counts(heap=_Heap(settle_heap))
    order = order if order is not None else TopicOrder()
    swapped = False
    try:
        total = await source.start()
        if on_total is not None:
            on_total(total)
        if partitioned is None:
            await _apply_source(
                target, order.of(source.messages()), projection, counts, on_progress, batch_size
            )
        else:
            load = await partitioned.load(
                target.schema, order.placed(source.messages()), on_progress
            )
            counts.applied += load.applied
            counts.skipped += load.skipped
            await target.adopt_load(load.written)
        await target.loaded()
        caught_up = 0
        for _ in range(CATCH_UP_ROUNDS):  # without the swap lock: live writers go on
            more = await source.extend_to_current_end()
            caught_up += more
            if on_total is not None and more:
                on_total(total + caught_up)
            await _apply_source(
                target, order.of(source.messages()), projection, counts, on_progress, batch_size
            )
            if more < batch_size:
                break

        async with target.swap() as uow:
            more = await source.extend_to_current_end()
            caught_up += more
            if on_total is not None and more:
                on_total(total + caught_up)
            tail = [m async for m in order.of(source.messages())]
            tail.extend(order.rest())  # what waited for a version the log never brought
            await _apply_all(uow, tail, projection, counts, on_progress)
            for event, position in await target.store_events_not_on_kafka():
                typed = event if only_marked(event) else _readable(event, from_store=True)
                if typed is None:
                    counts.skipped += 1  # unreadable: the live worker refused it too
                    continue
                await _apply_one(uow, typed, projection, counts, position)
            if clock is not None:
                await _apply_due_stage_changes(uow, await clock(), projection)
            await target.swap_in(applied=counts.applied, skipped=counts.skipped)
        swapped = True
    finally:
        counts.heap.release()
        await source.stop()
        await target.close()
        if not swapped:
            await target.discard()
    if not keep_retired:
        await target.drop_retired()
    return RebuildResult(
        schema=target.schema,
        total=total + caught_up,
        applied=counts.applied,
        skipped=counts.skipped,
        caught_up=caught_up,
        retired=target.retired if keep_retired else None,
        swap_lock_waits=target.swap_lock_waits,
    )


async def apply_share(
    target: RebuildTarget,
    batches: AsyncIterator[list[Replayed]],
    policy: FollowupPolicy,
    *,
    settle_heap: bool,
) -> tuple[int, int]:
    """A partitioned rebuild's process (:class:`PartitionedLoad`): its share of the log, batch
    by batch as the main phase applies them, into ``target`` (attached to the copy); returns
    how many events it applied and skipped."""
    projection = Projection(policy)
    counts = _Counts(heap=_Heap(settle_heap))
    try:
        async for batch in batches:
            await _apply_batch(target, batch, projection, counts, None)
            counts.heap.settle()
    finally:
        counts.heap.release()
    return counts.applied, counts.skipped


class TopicOrder:
    """A rebuild's messages with each stream's versions in order (#12,
    :mod:`~branchline_followup.domain.stream_order`), across the main phase, the catch-up and
    the swap's tail: an event re-queued after later versions of its stream were published is
    applied before them, as ``--from-stores`` applies it, instead of late again. A message read
    from a store (``--from-stores``: each store's log is in its streams' order already), or
    without a readable stream and version (the projection skips it), passes as it comes."""

    def __init__(self, order: StreamOrder[Placed] | None = None) -> None:
        self._order: StreamOrder[Placed] = order if order is not None else StreamOrder()

    async def of(self, messages: AsyncIterator[Replayed]) -> AsyncIterator[Replayed]:
        """The messages in order (a store's message not parsed: it passes as it comes)."""
        async for placed in self._ordered(messages, parse_stored=False):
            yield placed[0]

    async def placed(self, messages: AsyncIterator[Replayed]) -> AsyncIterator[Placed]:
        """:meth:`of` for a partitioned rebuild: each message with its envelope, parsed once
        here (a store's message too) and routed by it (:func:`.rebuild_routes.route_of`)
        without parsing it again (#12)."""
        async for placed in self._ordered(messages, parse_stored=True):
            yield placed

    async def _ordered(
        self, messages: AsyncIterator[Replayed], *, parse_stored: bool
    ) -> AsyncIterator[Placed]:
        async for message in messages:
            if message.from_store:
                envelope = envelope_fields(message.value) if parse_stored else None
                yield message, envelope
                continue
            envelope = envelope_fields(message.value)
            place = place_in_stream(envelope)
            if place is None:
                yield message, envelope
                continue
            for released in self._order.arrive(place[0], place[1], (message, envelope)):
                yield released

    def rest(self) -> list[Replayed]:
        """What is still held back (:meth:`StreamOrder.rest`)."""
        return [message for message, _ in self._order.rest()]

    @classmethod
    def bounded(cls, *, remembered: int, max_held: int) -> TopicOrder:
        """The order with its bounds (the settings ``followup_rebuild_remembered_streams``,
        ``followup_rebuild_max_held``)."""
        return cls(StreamOrder(remembered=remembered, max_held=max_held))


def stream_place(value: bytes | None) -> tuple[str, int] | None:
    """The envelope's stream and version, read for ordering only (one parse; the message is
    decoded with every check where it is applied); None if it has none to read."""
    return place_in_stream(envelope_fields(value))


def place_in_stream(envelope: Envelope | None) -> tuple[str, int] | None:
    """:func:`stream_place` of an envelope already parsed
    (:func:`.rebuild_routes.envelope_fields`)."""
    if envelope is None:
        return None
    stream_id, version = envelope.get("stream_id"), envelope.get("stream_version")
    if not isinstance(stream_id, str) or type(version) is not int:
        return None
    return stream_id, version


async def _apply_source(
    target: RebuildTarget,
    messages: AsyncIterator[Replayed],
    projection: Projection,
    counts: _Counts,
    on_progress: Progress | None,
    batch_size: int,
) -> None:
    """Everything ``messages`` yields (the source up to its current end), ``batch_size``
    events per transaction."""
    batch: list[Replayed] = []
    async for message in messages:
        batch.append(message)
        if len(batch) >= batch_size:
            await _apply_batch(target, batch, projection, counts, on_progress)
            counts.heap.settle()
            batch = []
    if batch:
        await _apply_batch(target, batch, projection, counts, on_progress)
        counts.heap.settle()


async def _apply_batch(
    target: RebuildTarget,
    messages: list[Replayed],
    projection: Projection,
    counts: _Counts,
    on_progress: Progress | None,
) -> None:
    """One transaction, no savepoint per event (two round trips each, #12): almost every
    batch applies whole. One that fails for good (an event the live worker dead-lettered) is
    rolled back and applied again with a savepoint per event, which skips just that event: the
    same result as applying every event in its own savepoint."""
    decoded: list[tuple[Decoded | RecordedEvent, SourcePosition | None]] = []
    poison = 0
    for message in messages:
        typed = _received(message)
        if typed is None:
            poison += 1  # the live worker dead-lettered it
            continue
        decoded.append((typed, source_position(message.headers)))
    envelopes = [(_envelope(typed), position) for typed, position in decoded]
    try:
        async with target.batch() as uow:
            # what it reads ahead for the batch: in a long rebuild, what it no longer
            # remembers (applied ids, journal places) is read once per batch, not per event
            await uow.hold_clients_of(envelopes)
            # the recorded creations its deciding events may replay, looked up in one
            # statement for the batch (#12), not one per creating event
            creations = PendingCreations()
            await creations.look_up_ahead(
                uow, [e.event_id for e, _ in envelopes if locks_client(e) and may_open_tasks(e)]
            )
            for typed, position in decoded:
                await _project(uow, typed, projection, position, creations)
    except Exception as exc:
        if is_transient(exc):
            raise
        async with target.batch() as uow:
            await _apply_all(uow, messages, projection, counts, on_progress)
        return
    counts.applied += len(decoded)
    counts.skipped += poison
    if on_progress is not None and messages:
        on_progress(len(messages))


async def _apply_all(
    uow: FollowupUnitOfWork,
    messages: list[Replayed],
    projection: Projection,
    counts: _Counts,
    on_progress: Progress | None,
) -> None:
    for message in messages:
        typed = _received(message)
        if typed is None:
            counts.skipped += 1  # the live worker dead-lettered it
            continue
        await _apply_one(uow, typed, projection, counts, source_position(message.headers))
    if on_progress is not None and messages:
        on_progress(len(messages))


def _received(message: Replayed) -> Decoded | RecordedEvent | None:
    """The replayed message decoded, once, envelope and payload (#12: the projection's helpers
    read that one payload); only its envelope for an event the projection only marks applied
    (a rebuild replays every recorded task creation: their payloads are read where they are
    looked up); None for what the live worker dead-lettered (not an envelope, a version it
    cannot read, a payload it cannot read). A message read from Branchline's own event store
    (``--from-stores``) is read without the checks made where it entered, one from a topic with
    them all (#12), a plain topic message without the checks that cannot refuse it
    (:mod:`~branchline_shared.events.plain_messages`)."""
    if not message.from_store:
        # a plain message (the usual one) without the checks that cannot refuse it (#12):
        # the same event; any other, or one refused, is decoded below with every check
        plain = plain_event(message.value)
        if plain is not None:
            if only_marked(plain):
                return plain
            typed = plain_payload(plain)
            return typed if typed is not None else _readable(plain, from_store=False)
    try:
        event = decode_current_event(message.value, from_store=message.from_store)
    except PoisonEvent:
        return None
    return event if only_marked(event) else _readable(event, from_store=message.from_store)


def _envelope(event: Decoded | RecordedEvent) -> RecordedEvent:
    return event if isinstance(event, RecordedEvent) else event.envelope


async def _project(
    uow: FollowupUnitOfWork,
    event: Decoded | RecordedEvent,
    projection: Projection,
    position: SourcePosition | None,
    creations: PendingCreations | None = None,
) -> bool:
    if isinstance(event, RecordedEvent):
        return await mark_only(uow, event, position)
    return await project(uow, event, projection, position, creations=creations)


def _readable(event: RecordedEvent, *, from_store: bool) -> Decoded | None:
    try:
        return decode(event, from_store=from_store)
    except UnreadablePayload:
        return None


async def _apply_one(
    uow: FollowupUnitOfWork,
    event: Decoded | RecordedEvent,
    projection: Projection,
    counts: _Counts,
    position: SourcePosition | None,
) -> None:
    try:
        async with uow.savepoint():  # a failing event leaves no trace
            await _project(uow, event, projection, position)
        counts.applied += 1
    except Exception as exc:
        if is_transient(exc):
            raise
        counts.skipped += 1  # what the live worker dead-lettered


async def _apply_due_stage_changes(
    uow: FollowupUnitOfWork, now: datetime, projection: Projection, batch_size: int = 500
) -> None:
    """The stage changes by time due at ``now``, as the live timer runner makes them."""
    while claimed := await uow.clients.claim_due_stage_changes(now, batch_size):
        for client_id in claimed:
            await uow.lock_client(client_id)
            await apply_client_stage_changes(uow, client_id, now, projection.policy)
