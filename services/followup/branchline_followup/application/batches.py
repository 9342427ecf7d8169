"""Applying a fetched batch of events in one unit of work (#12: one transaction, one commit
for the batch instead of one per event), still effectively once (ADR-0003).

Each event is applied as :func:`~.projector.project` applies it, its id recorded as applied
in the same transaction, so an event delivered twice (even twice in one batch) changes the
read models once. A failure that is not transient rolls the whole batch back and falls back to
one unit of work per event: only the event that fails again is reported (the worker
dead-letters it with the reason); the others are applied. A transient failure (connection
lost, deadlock) retries, first the batch, then each event.

Each event is decoded once, where the batch receives it (#12): the projection's helpers read
that one typed payload. An event whose payload cannot be read fails alone before any unit of
work, reported like an event the projection refused (the worker dead-letters it with the
reason: the field named, never the value, D-04).

The first publications of followup's own events never get here: the worker skips
them unread (``entrypoints.worker.is_first_own_copy``, #12). A copy of one that a repair
re-queued does, and is applied like any other event, its id deciding (ADR-0003).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from branchline_followup.application.ports import FollowupUnitOfWork, UnitsOfWork
from branchline_followup.application.projector import (
    Projection,
    apply_event,
    locks_client,
    may_open_tasks,
    project,
)
from branchline_followup.application.task_creations import PendingCreations
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded, UnreadablePayload, decode
from branchline_shared.kafka.consuming import retry_transient
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.logging_setup import describe_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """One event of a fetched batch and where its store put it (None: unknown)."""

    event: RecordedEvent
    position: SourcePosition | None = None


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


@dataclass(frozen=True)
class _Readable:
    """An event of the batch decoded (once), its index in the batch and its position."""

    index: int
    event: Decoded
    position: SourcePosition | None


async def _apply_all(
    uow: FollowupUnitOfWork, batch: Sequence[_Readable], projection: Projection
) -> BatchOutcome:
    outcome = BatchOutcome()
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
    units: UnitsOfWork, batch: Sequence[Delivered], projection: Projection, *, consumer: str
) -> BatchOutcome:
    """Apply ``batch`` in order in one unit of work; see the module's docstring."""
    if not batch:
        return BatchOutcome()
    unreadable: list[tuple[int, Exception]] = []
    readable: list[_Readable] = []
    for index, delivered in enumerate(batch):
        try:
            readable.append(_Readable(index, decode(delivered.event), delivered.position))
        except UnreadablePayload as exc:  # reported: the worker dead-letters it with the reason
            unreadable.append((index, exc))
    if not readable:
        return BatchOutcome(failed=unreadable)

    async def all_at_once() -> BatchOutcome:
        async with units.begin() as uow:
            return await _apply_all(uow, readable, projection)

    try:
        outcome: BatchOutcome = await retry_transient(all_at_once, consumer=consumer)
    except Exception as exc:
        log.info(
            "batch failed; applying its events one by one", extra={"error": describe_error(exc)}
        )
    else:
        outcome.failed = unreadable
        return outcome
    outcome = BatchOutcome(failed=unreadable, one_by_one=True)
    for r in readable:

        async def one(each: _Readable = r) -> bool:
            return await apply_event(units, each.event, projection, each.position)

        try:
            applied = await retry_transient(one, consumer=consumer)
        except Exception as exc:  # reported: the worker dead-letters it with the reason
            outcome.failed.append((r.index, exc))
            continue
        if applied:
            outcome.applied += 1
        else:
            outcome.already_applied += 1
    outcome.failed.sort(key=lambda failure: failure[0])
    return outcome
