"""A sale and a re-rating of the same product applied at once by two worker processes (D-15,
#12): the sale travels under its client's key, the re-rating under the product's, so two
consumers of the group apply them in two transactions at the same moment.

The race is held open deterministically: one unit is paused at its racing point (the sale just
after writing its holding, or the re-rating just after re-rating the product's holdings), the
other unit is run until it is done or waits for a lock, then the first is let go. Until this
round both went through: the re-rating's ``UPDATE`` did not see the sale's uncommitted holding,
the sale's ratings read did not see the uncommitted rating, so the holding kept the old risk and
the review the re-rating should have raised for the holder was never raised. Now a unit applying
a sale or a rating of a product holds the product's lock first (``lock_products``): the second
waits for the first to commit, then sees it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters.unit_of_work import (
    PostgresFollowupUnitOfWork,
    PostgresUnitsOfWork,
)
from branchline_followup.application.batches import BatchOutcome, Delivered, apply_batch
from branchline_followup.application.projector import Projection, apply_event
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_followup.domain import FollowupPolicy
from branchline_followup.entrypoints.worker import CONSUMER
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import decode
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, now_utc
from tests.support.events import ADMIN, recorded_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RECORDING = Projection(FollowupPolicy(), task_creations_topic="followup.events")
CLIENT = "C-RACE-HOLDER"
PRODUCT = "P-RACE-FUND"


class PausedUnits:
    """``units`` whose first unit stops just after ``racing_point`` (a method of its
    holdings: ``hold`` or ``rerate``) until :meth:`go` is called; counts the units begun (a
    deadlock or another transient failure would begin the batch again)."""

    def __init__(self, units: PostgresUnitsOfWork, racing_point: str | None = None) -> None:
        self._units = units
        self._racing_point = racing_point
        self.paused = asyncio.Event()
        self._go = asyncio.Event()
        self.begun = 0

    def go(self) -> None:
        self._go.set()

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        self.begun += 1
        async with self._units.begin() as unit:
            if self._racing_point is not None and not self._go.is_set():
                original = getattr(unit.holdings, self._racing_point)

                async def racing(*args: Any) -> Any:
                    result = await original(*args)
                    self.paused.set()
                    await self._go.wait()
                    return result

                setattr(unit.holdings, self._racing_point, racing)
            yield unit


@contextlib.asynccontextmanager
async def two_workers(settings: BranchlineSettings) -> AsyncIterator[tuple[Any, Any]]:
    """Two pools on the read models, as two worker processes have."""
    await prepare_database(settings)
    first = await open_read_model_pool(settings)
    second = await open_read_model_pool(settings)
    try:
        yield PostgresUnitsOfWork(first), PostgresUnitsOfWork(second)
    finally:
        await first.close()
        await second.close()


def delivered(events: Sequence[RecordedEvent], start: int) -> list[Delivered]:
    return [Delivered(e, SourcePosition("intake", n)) for n, e in enumerate(events, start=start)]


def rerated(product_id: str, risk: str, at: datetime, version: int = 1) -> RecordedEvent:
    return recorded_event(
        "product.rerated",
        {"risk": risk, "effective_at": at.isoformat(), "reason": "equity share raised"},
        at=at,
        product_id=product_id,
        version=version,
        actor=ADMIN,
    )


async def waited(db: asyncpg.Connection[Any], other: asyncio.Task[Any]) -> bool:
    """Returns once ``other`` is done (False) or one of its statements waits for an advisory
    lock (True: the paused unit's; nothing else runs on this database)."""
    while not other.done():
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        )
        if waiting:
            return True
        await asyncio.sleep(0.01)
    return False


Apply = Callable[[PausedUnits, Sequence[Delivered]], Awaitable[Any]]


async def in_a_batch(units: PausedUnits, events: Sequence[Delivered]) -> BatchOutcome:
    return await apply_batch(units, events, RECORDING, consumer=CONSUMER)  # type: ignore[arg-type]


async def one_by_one(units: PausedUnits, events: Sequence[Delivered]) -> BatchOutcome:
    """Each event in a unit of its own (a batch's fallback: ``apply_event``)."""
    outcome = BatchOutcome(one_by_one=True)
    for d in events:
        outcome.count(await apply_event(units, decode(d.event), RECORDING, d.position))  # type: ignore[arg-type]
    return outcome


async def race(
    db: asyncpg.Connection[Any],
    paused: PausedUnits,
    first: Sequence[Delivered],
    other_units: PausedUnits,
    second: Sequence[Delivered],
    apply: Apply = in_a_batch,
) -> tuple[BatchOutcome, BatchOutcome, bool]:
    """``first`` applied by ``paused`` and held at its racing point while ``second`` is
    applied by ``other_units`` (until done or waiting); then both finish. Also whether the
    second waited for the first."""
    held = asyncio.create_task(apply(paused, first))
    await paused.paused.wait()
    other = asyncio.create_task(apply(other_units, second))
    serialised = await waited(db, other)
    paused.go()
    return await held, await other, serialised


def holder_and_sale(at: datetime) -> tuple[list[RecordedEvent], RecordedEvent]:
    """The client (tolerance C1, the lowest) and their purchase of the product at R1."""
    h = History()
    h.registered(CLIENT, at - timedelta(days=2))
    h.add("client.risk_assessed", CLIENT, at - timedelta(days=2), {"level": "C1"})
    sale = h.add(
        "product.sold",
        CLIENT,
        at,
        {"product_id": PRODUCT, "amount": "1000", "product_risk": "R1"},
    )
    return h.events[:-1], sale


async def reviews_and_risk(db: asyncpg.Connection[Any]) -> tuple[int, str | None]:
    reviews = await db.fetchval(
        "SELECT count(*) FROM fu_tasks WHERE client_id = $1 AND kind = 'suitability_review'",
        CLIENT,
    )
    risk = await db.fetchval(
        "SELECT product_risk FROM fu_holdings WHERE client_id = $1 AND product_id = $2",
        CLIENT,
        PRODUCT,
    )
    return int(reviews), risk


@pytest.mark.parametrize("apply", [in_a_batch, one_by_one], ids=["batch", "event"])
@pytest.mark.parametrize("held_first", ["sale", "rerating"])
async def test_a_rerating_and_a_sale_applied_at_once_raise_the_holders_review(
    settings: BranchlineSettings, db: asyncpg.Connection[Any], held_first: str, apply: Apply
) -> None:
    """Whichever unit reaches its racing point first, the holding ends at the new rating and
    the holder's review (D-15: R4 above tolerance C1) is due (old code: R1, no review); in a
    batch and in a unit per event (a batch's fallback)."""
    sold_at = now_utc() - timedelta(hours=3)
    client_events, sale = holder_and_sale(sold_at)
    rerating = rerated(PRODUCT, "R4", sold_at + timedelta(hours=1))
    async with two_workers(settings) as (units_a, units_b):
        await apply_batch(units_a, delivered(client_events, 1), RECORDING, consumer=CONSUMER)
        sales = delivered([sale], 10)
        ratings = delivered([rerating], 20)
        if held_first == "sale":
            *outcomes, serialised = await race(
                db, PausedUnits(units_a, "hold"), sales, PausedUnits(units_b), ratings, apply
            )
        else:
            *outcomes, serialised = await race(
                db, PausedUnits(units_b, "rerate"), ratings, PausedUnits(units_a), sales, apply
            )
    assert all(o.applied == 1 and not o.failed for o in outcomes)
    assert await reviews_and_risk(db) == (1, "R4")
    assert serialised


async def test_batches_naming_products_in_other_orders_do_not_deadlock(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """Two batches re-rating two products in opposite orders, the first held after its first
    re-rating: the second waits for the first (the products' locks are taken at once, in one
    order), and each is applied in one unit, never begun again (a deadlock would have been
    retried: a second unit) nor applied one by one."""
    at = now_utc() - timedelta(hours=1)
    first = [rerated("P-RACE-2", "R3", at), rerated("P-RACE-1", "R3", at)]
    second = [
        rerated("P-RACE-1", "R4", at + timedelta(minutes=1), version=2),
        rerated("P-RACE-2", "R4", at + timedelta(minutes=1), version=2),
    ]
    async with two_workers(settings) as (units_a, units_b):
        paused = PausedUnits(units_a, "rerate")
        other = PausedUnits(units_b)
        *outcomes, serialised = await race(
            db, paused, delivered(first, 1), other, delivered(second, 10)
        )
    assert serialised  # the second batch waited for the first's locks (old code: no lock)
    assert [o.applied for o in outcomes] == [2, 2]
    assert not any(o.one_by_one for o in outcomes)
    assert (paused.begun, other.begun) == (1, 1)
    rows = await db.fetch(
        "SELECT product_id, count(*) AS n FROM fu_product_ratings "
        "WHERE product_id LIKE 'P-RACE-%' GROUP BY product_id ORDER BY product_id"
    )
    assert [(r["product_id"], r["n"]) for r in rows] == [("P-RACE-1", 2), ("P-RACE-2", 2)]
