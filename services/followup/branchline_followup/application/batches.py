"""Applying a fetched batch of events in one unit of work (#12: one transaction, one commit
for the batch instead of one per event), still effectively once (ADR-0003).

Each event is applied as :func:`~.projector.project` applies it, its id recorded as applied
in the same transaction, so an event delivered twice (even twice in one batch) changes the
read models once. A failure that is not transient rolls the whole batch back and falls back to
one unit of work per event: only the event that fails again is reported (the worker
dead-letters it with the reason); the others are applied. A transient failure (connection
lost, deadlock) retries, first the batch, then each event; so does a race lost in followup's
event store (a creation's id another writer stored meanwhile: the rerun reads it and replays
it), a bounded number of times (#12). A statement the database cancels (57014) five times in
a row ends the batch's retries (it falls back to one by one), and an event whose own statement
is cancelled five times in a row while others of the batch go through is dead-lettered with
"statement cancelled 5 times" (replayable); when none goes through, the cancellations may be
everyone's: it is retried, in sight, until it goes through or, given a probe (``answering``),
its statement is cancelled ``alone_attempts`` times in a row with the probe answered after
each: then the database does others' work, and it is dead-lettered too, with that reason (a
probe unanswered restarts the count: an overloaded or unreachable database dead-letters
nothing; docs/reliability.md).

Each event is decoded once, where the batch receives it (#12): the projection's helpers read
that one typed payload. The worker hands its plain messages' payloads decoded already, read
without the checks that cannot refuse them (``Delivered.decoded``, as the rebuild reads them).
An event whose payload cannot be read fails alone before any unit of work, reported like an
event the projection refused (the worker dead-letters it with the reason: the field named, never
the value, D-04).

The first publications of followup's own events never get here: the worker skips
them unread (``entrypoints.worker.is_first_own_copy``, #12). A copy of one that a repair
re-queued does, and is applied like any other event, its id deciding (ADR-0003).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from branchline_followup.application import suitability
from branchline_followup.application.ports import FollowupUnitOfWork, UnitsOfWork
from branchline_followup.application.projector import (
    Projection,
    apply_event,
    locks_client,
    may_open_tasks,
    project,
)
from branchline_followup.application.reprojection import ProductsFirst
from branchline_followup.application.task_creations import PendingCreations
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded, UnreadablePayload, decode
from branchline_shared.kafka.consuming import (
    CANCELLED_ALONE,
    Answering,
    StatementCancelled,
    retry_transient,
)
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.logging_setup import describe_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """One event of a fetched batch and where its store put it (None: unknown)."""

    event: RecordedEvent
    position: SourcePosition | None = None
    place: tuple[str, int, int] | None = None
    """Where the consumer read it (topic, partition, offset), for the log lines of its
    retries (never a value); formatted only when one is logged."""
    decoded: Decoded | None = None
    """``event`` decoded already, envelope and payload, as :func:`~branchline_shared.events.
    typed.decode` decodes it (the worker's plain messages, read without the checks that cannot
    refuse them, #12); None: the batch decodes it."""


@dataclass
class BatchOutcome:
    applied: int = 0
    """Events that changed the read models."""
    already_applied: int = 0
    """Redeliveries (and repeats within the batch) that changed nothing."""
    failed: list[tuple[int, Exception]] = field(default_factory=list)
    """(index in the batch, why) of every event that could not be applied on its own."""
    one_by_one: bool = False
    """The batch fell back to one unit of work per event (something in it failed)."""

    def count(self, applied: bool) -> None:
        if applied:
            self.applied += 1
        else:
            self.already_applied += 1


@dataclass(frozen=True)
class _Readable:
    """An event of the batch decoded (once), its index in the batch and its position."""

    index: int
    event: Decoded
    position: SourcePosition | None
    place: tuple[str, int, int] | None = None


async def _apply_all(
    uow: FollowupUnitOfWork,
    batch: Sequence[_Readable],
    projection: Projection,
    products_first: frozenset[str] = frozenset(),
) -> BatchOutcome:
    outcome = BatchOutcome()
    # The products its sales and ratings name first, before any client's lock and before
    # their ratings or holdings are read (D-15, #12): a statement of its own, only in a
    # batch that has some. With them, on a rerun, those a re-projection in it wanted.
    products = sorted(
        set(suitability.products_rated_or_sold(r.event.envelope for r in batch)) | products_first
    )
    if products:
        await uow.lock_products(products)
    # The batch's ids are recorded as applied in one statement, and the task creations its
    # events decide are recorded together at its end (#12: round trips per batch, not per
    # event); the effect is the one of applying each event in turn with its own.
    # The clients' locks are taken in the same statement where the unit can (#12).
    fresh = await uow.mark_applied_all(
        [(r.event.envelope, r.position) for r in batch],
        locking=[locks_client(r.event.envelope) for r in batch],
    )
    todo: list[_Readable] = []
    for readable in batch:
        event_id = readable.event.envelope.event_id
        if event_id not in fresh:
            outcome.already_applied += 1
            continue
        fresh.discard(event_id)  # a repeat later in the batch changes nothing
        todo.append(readable)
    # The batch's clients are locked and what applying their events reads of them is read
    # ahead, in a few statements for the whole batch (#12); the rest is read when asked.
    held = [(r.event.envelope, r.position) for r in todo if locks_client(r.event.envelope)]
    await uow.hold_clients_of(held)
    creations = PendingCreations()
    await creations.look_up_ahead(uow, [e.event_id for e, _ in held if may_open_tasks(e)])
    for readable in todo:
        await project(
            uow, readable.event, projection, readable.position, marked=True, creations=creations
        )
        outcome.applied += 1
    if projection.task_creations_topic is not None:
        await creations.record(uow, projection.task_creations_topic)
    return outcome


async def apply_batch(
    units: UnitsOfWork,
    batch: Sequence[Delivered],
    projection: Projection,
    *,
    consumer: str,
    answering: Answering | None = None,
    alone_attempts: int = CANCELLED_ALONE,
) -> BatchOutcome:
    """Apply ``batch`` in order in one unit of work; see the module's docstring."""
    if not batch:
        return BatchOutcome()
    unreadable: list[tuple[int, Exception]] = []
    readable: list[_Readable] = []
    for index, delivered in enumerate(batch):
        try:
            typed = delivered.decoded
            if typed is None:
                typed = decode(delivered.event)
            readable.append(_Readable(index, typed, delivered.position, delivered.place))
        except UnreadablePayload as exc:  # reported: the worker dead-letters it with the reason
            unreadable.append((index, exc))
    if not readable:
        return BatchOutcome(failed=unreadable)

    first = ProductsFirst()  # kept across the retries below too

    async def in_one_unit(products: frozenset[str]) -> BatchOutcome:
        async with units.begin() as uow:
            return await _apply_all(uow, readable, projection, products)

    async def all_at_once() -> BatchOutcome:
        return await first.run(in_one_unit)

    try:
        outcome: BatchOutcome = await retry_transient(
            all_at_once,
            consumer=consumer,
            where=functools.partial(_places, readable),
            cancelled_limit=CANCELLED_ALONE,
        )
    except Exception as exc:
        log.info(
            "batch failed; applying its events one by one", extra={"error": describe_error(exc)}
        )
    else:
        outcome.failed = unreadable
        return outcome
    outcome = BatchOutcome(failed=unreadable, one_by_one=True)
    cancelled: list[tuple[_Readable, StatementCancelled]] = []
    for r in readable:
        try:
            applied = await _apply_one(units, r, projection, consumer, CANCELLED_ALONE)
        except StatementCancelled as exc:  # judged once the others are known
            cancelled.append((r, exc))
            continue
        except Exception as exc:  # reported: the worker dead-letters it with the reason
            outcome.failed.append((r.index, exc))
            continue
        outcome.count(applied)
    others_went_through = outcome.applied + outcome.already_applied > 0
    for r, gave_up in cancelled:
        if others_went_through:
            # Only its own statement is cancelled, again and again, while the database does
            # the others' work: dead-lettered (replayable), not holding the consumer (#12).
            log.error(
                "event's statement cancelled on every attempt; dead-lettering it",
                extra={"where": _places([r]), "attempts": gave_up.attempts},
            )
            outcome.failed.append((r.index, gave_up))
            continue
        # Nothing else went through: the cancellations may be everyone's (a database too
        # slow for its statement_timeout), so the event is retried, in sight, given up only
        # when the database answers a probe after each of its cancellations (#12).
        try:
            if answering is None:
                applied = await _apply_one(units, r, projection, consumer, None)
            else:
                applied = await _apply_one(
                    units, r, projection, consumer, alone_attempts, answering
                )
        except StatementCancelled as alone:
            log.error(
                "event's statement cancelled on every attempt alone while the database "
                "answered; dead-lettering it",
                extra={"where": _places([r]), "attempts": alone.attempts},
            )
            outcome.failed.append((r.index, alone))
            continue
        except Exception as error:
            outcome.failed.append((r.index, error))
            continue
        outcome.count(applied)
    outcome.failed.sort(key=lambda failure: failure[0])
    return outcome


async def _apply_one(
    units: UnitsOfWork,
    each: _Readable,
    projection: Projection,
    consumer: str,
    cancelled_limit: int | None,
    answering: Answering | None = None,
) -> bool:
    async def one() -> bool:
        return await apply_event(units, each.event, projection, each.position)

    applied: bool = await retry_transient(
        one,
        consumer=consumer,
        where=functools.partial(_places, [each]),
        cancelled_limit=cancelled_limit,
        answering=answering,
    )
    return applied


def _places(batch: Sequence[_Readable]) -> str | None:
    """The batch's offsets, per partition first to last (``topic:partition:first-last``)."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for r in batch:
        if r.place is None:
            continue
        topic, partition, offset = r.place
        first, last = spans.get((topic, partition), (offset, offset))
        spans[(topic, partition)] = (min(first, offset), max(last, offset))
    if not spans:
        return None
    return " ".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(spans.items()))
