"""The timer runner's work: fire the durable timers that are due (ADR-0008).

Timers are claimed with ``FOR UPDATE SKIP LOCKED``, so any number of runners (worker replicas,
the API answering a test-clock change) share the work without waiting on each other. A timer
fires in the transaction that appends its event (``followup.overdue`` / ``followup.escalated``)
to the event store with the outbox row and marks the timer fired: exactly once. The event id
is derived from the task, the timer and the deadline, so even a timer armed again (after a
rebuild) never records a second event.

Clients have a durable timer too: the next instant their lifecycle stage changes by time alone
(D-09: new → mature, churned after a year without business), ``fu_clients.stage_changes_at``.
A runner claims due clients the same way and, under the client's lock, stores the stage as of
that instant with the tasks the change brings (D-08: one win-back contact for a churned client),
then the client's next stage change: the row is no longer due once committed, and the tasks'
ids derive from the client's last business event, so nothing is created twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.application.projector import apply_client_stage_changes
from branchline_followup.application.recording import (
    TIMER_ACTOR,
    FollowupContext,
    record_and_apply,
)
from branchline_followup.application.reprojection import (
    ProductLocksWanted,
    in_a_unit_products_first,
)
from branchline_followup.domain import TimerKind, on_timer_fired
from branchline_followup.domain.records import DueTimer
from branchline_shared.kafka.consuming import CONFLICT_RERUNS, is_conflict, is_transient

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class TimerRound:
    fired: int
    """Events recorded."""
    consumed: int
    """Timers that fired for nothing (task closed or moved meanwhile)."""
    busy: int
    """Timers left for the next round: their client was locked by another writer."""
    stage_changes: int = 0
    """Clients whose stage change by time was due and is made."""
    dead: int = 0
    """Timers (and stage changes) that could not fire: dead-lettered with their reason."""


async def run_due_timers(
    ctx: FollowupContext, now: datetime, *, batch_size: int = 200
) -> TimerRound:
    """Make the stage changes and fire the timers due at ``now`` that no other runner holds
    (stage changes first: the tasks they create may be due already); returns what happened."""
    stage_changes, busy, dead = await run_due_stage_changes(ctx, now, batch_size=batch_size)
    fired = consumed = 0

    async def a_round(uow: FollowupUnitOfWork) -> tuple[int, int, int, int, int]:
        """One unit's timers: (claimed, busy, fired, consumed, dead), counted per run (a run
        given up for products to lock first counts nothing)."""
        claimed = await uow.timers.claim_due(now, batch_size)
        round_busy = round_fired = round_consumed = round_dead = 0
        for timer in claimed:
            if not await uow.try_lock_client(timer.client_id):
                round_busy += 1
                continue
            try:
                done = await _alone(uow, functools.partial(_fire, uow, ctx, timer, now))
            except Exception as exc:
                if is_transient(exc) or isinstance(exc, ProductLocksWanted):
                    raise  # D-15: the round is run again taking those products first
                await _dead_letter(uow, timer, now, exc)
                round_dead += 1
                continue
            if done:
                round_fired += 1
            else:
                round_consumed += 1
        return len(claimed), round_busy, round_fired, round_consumed, round_dead

    while True:
        # a re-projection in a timer's event that wants products another unit holds gives
        # the round up; its rerun locks them first, before any client's (D-15, #12)
        (
            claimed,
            round_busy,
            round_fired,
            round_consumed,
            round_dead,
        ) = await in_a_unit_products_first(ctx.units, a_round)
        fired += round_fired
        consumed += round_consumed
        dead += round_dead
        busy += round_busy
        if claimed < batch_size or round_busy == claimed:
            return TimerRound(
                fired=fired, consumed=consumed, busy=busy, stage_changes=stage_changes, dead=dead
            )


async def run_due_stage_changes(
    ctx: FollowupContext, now: datetime, *, batch_size: int = 200
) -> tuple[int, int, int]:
    """Make every client stage change due at ``now`` that no other runner or writer holds;
    returns (clients changed, clients left busy for the next round, dead-lettered)."""
    changed = busy = dead = 0
    policy = ctx.projection.policy
    while True:
        async with ctx.units.begin() as uow:
            claimed = await uow.clients.claim_due_stage_changes(now, batch_size)
            round_busy = 0
            for client_id in claimed:
                if not await uow.try_lock_client(client_id):
                    round_busy += 1
                    continue
                try:
                    made = await _alone(
                        uow,
                        functools.partial(
                            apply_client_stage_changes,
                            uow,
                            client_id,
                            now,
                            policy,
                            topic=ctx.projection.task_creations_topic,
                        ),
                    )
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    log.warning(
                        "stage change dead-lettered",
                        extra={"client_id": client_id, "error": _reason(exc)},
                    )
                    await uow.clients.dead_letter_stage_change(client_id, _reason(exc))
                    dead += 1
                    continue
                if made:
                    changed += 1
        busy += round_busy
        if len(claimed) < batch_size or round_busy == len(claimed):
            return changed, busy, dead


async def _alone(uow: FollowupUnitOfWork, work: Callable[[], Awaitable[T]]) -> T:
    """``work`` in a savepoint of its own (a timer or a client fails alone), run again in a
    new one when it lost a race in the event store (#12): the rerun reads what the other
    writer committed (READ COMMITTED: each statement sees what was committed before it) and
    decides against it. The same conflict every time is the work's own: it fails, and is
    dead-lettered with its reason as before."""
    reruns = 0
    while True:
        try:
            async with uow.savepoint():
                return await work()
        except Exception as exc:
            if not is_conflict(exc) or reruns >= CONFLICT_RERUNS:
                raise
            if isinstance(exc, ProductLocksWanted):
                raise  # rerun in a new unit taking the products first, not here (D-15)
            reruns += 1
            log.warning("timer work lost a race; running it again", extra={"reruns": reruns})


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


async def _dead_letter(
    uow: FollowupUnitOfWork, timer: DueTimer, now: datetime, exc: BaseException
) -> None:
    """Poison stays local: a timer that cannot fire is set aside with its reason (and logged)
    instead of failing the round, so every other client's deadlines still pass."""
    log.warning(
        "timer dead-lettered",
        extra={"timer_id": str(timer.id), "task_id": str(timer.task_id), "error": _reason(exc)},
    )
    await uow.timers.dead_letter(timer.id, now, _reason(exc))


async def _fire(
    uow: FollowupUnitOfWork, ctx: FollowupContext, timer: DueTimer, now: datetime
) -> bool:
    task = await uow.tasks.get(timer.task_id)
    kind = TimerKind(timer.kind)
    event = None if task is None else on_timer_fired(task, kind, now, ctx.projection.policy)
    if task is None or event is None:
        await uow.timers.consume(timer.id, timer.fire_at)
        return False
    await record_and_apply(
        uow,
        ctx,
        event_id=event.event_id,
        event_type=event.type,
        task=task,
        occurred_at=event.occurred_at,
        actor=TIMER_ACTOR,
        data=dict(event.data),
    )
    # Normally applying the event marked it; a timer whose event was recorded before (and is
    # applied already) is marked here.
    await uow.timers.mark_fired(task.id, kind.value, event.occurred_at, event.event_id)
    return True


async def fire_all_due(
    ctx: FollowupContext, now: datetime, *, within_s: float = 10.0, batch_size: int = 200
) -> int:
    """Fire every timer due at ``now``, waiting (bounded) for those another runner holds;
    returns how many events this call recorded (the test clock's "fire at once")."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    fired = 0
    while True:
        fired += (await run_due_timers(ctx, now, batch_size=batch_size)).fired
        async with ctx.units.begin() as uow:
            left = await uow.timers.count_due(now) + await uow.clients.count_due_stage_changes(now)
        if not left or loop.time() > deadline:
            return fired
        await asyncio.sleep(0.05)
