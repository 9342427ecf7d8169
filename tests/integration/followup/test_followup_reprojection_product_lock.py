"""A late event's re-projection racing a re-rating of a product its client holds (D-15, #12).

A late event (one of a client's, arriving after a later one of its store) makes its unit replay
the client's journal (#13), the client's sales too: their holdings are deleted and written
again at the ratings read then. Round 27 made a sale and a rating of one product serialise on
the product's lock; the re-projection took none (it holds the client's lock already, and a
product's comes before a client's). Two interleavings, held open as in
``test_followup_rating_race.py`` (one unit paused at its racing point, the other run until it
is done or waits for a lock):

- the re-projection paused just after writing the holding again (at the old rating): the
  re-rating's ``UPDATE`` waited for the deleted row, found it deleted, and the new row was not
  in its snapshot: the holding kept the old risk and the holder's review was never raised;
- the re-rating paused just after re-rating the holdings (holding their rows and the product's
  lock): the re-projection's ``DELETE`` of the holding waited for the re-rating's row, the
  re-rating then waited for the client's lock: a deadlock, broken by PostgreSQL (after its
  ``deadlock_timeout``) and retried.

Now the re-projection tries the products' locks before it clears anything; one not granted
gives the unit up (nothing written) and its rerun takes the products first, before the
client's: the holding ends at the new rating with the review, and no unit deadlocks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from branchline_followup.adapters.unit_of_work import (
    PostgresFollowupUnitOfWork,
    PostgresUnitsOfWork,
)
from branchline_followup.application.batches import apply_batch
from branchline_followup.entrypoints.worker import CONSUMER
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, now_utc
from tests.integration.followup.test_followup_rating_race import (
    CLIENT,
    PRODUCT,
    RECORDING,
    Apply,
    PausedUnits,
    delivered,
    in_a_batch,
    one_by_one,
    rerated,
    reviews_and_risk,
    two_workers,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class WatchedUnits(PausedUnits):
    """:class:`PausedUnits` that also note the name of the error each unit failed with."""

    def __init__(self, units: PostgresUnitsOfWork, racing_point: str | None = None) -> None:
        super().__init__(units, racing_point)
        self.failures: list[str] = []

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        try:
            async with super().begin() as unit:
                yield unit
        except Exception as exc:
            self.failures.append(type(exc).__name__)
            raise


async def waited(db: asyncpg.Connection[Any], other: asyncio.Task[Any]) -> bool:
    """Returns once ``other`` is done (False) or one of its statements waits for a lock of
    any kind (True: an advisory lock, or a row the paused unit holds; nothing else runs on
    this database)."""
    while not other.done():
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        if waiting:
            return True
        await asyncio.sleep(0.01)
    return False


def a_holder_and_a_late_event() -> tuple[list[RecordedEvent], RecordedEvent]:
    """The client (tolerance C1) with their purchase of the product at R1, in order; and an
    event of theirs recorded before the sale, delivered after it (late: a re-projection)."""
    sold_at = now_utc() - timedelta(hours=3)
    h = History()
    h.registered(CLIENT, sold_at - timedelta(days=2))
    h.add("client.risk_assessed", CLIENT, sold_at - timedelta(days=2), {"level": "C1"})
    late = h.add(
        "visit.arrived", CLIENT, sold_at - timedelta(days=1), {"visit_id": "V-1", "ticket": "A1"}
    )
    h.add(
        "product.sold",
        CLIENT,
        sold_at,
        {"product_id": PRODUCT, "amount": "1000", "product_risk": "R1"},
    )
    return [e for e in h.events if e is not late], late


async def race_late_event_and_rerating(
    settings: BranchlineSettings, db: asyncpg.Connection[Any], held_first: str, apply: Apply
) -> tuple[WatchedUnits, WatchedUnits, bool]:
    """The holder's history applied (its late event left out), then the late event (at its
    own, earlier position) and a re-rating of the product to R4 (effective after the sale)
    applied at once by two workers, ``held_first`` paused at its racing point."""
    in_order, late = a_holder_and_a_late_event()
    rerating = rerated(PRODUCT, "R4", now_utc() - timedelta(hours=2))
    positions = [1, 2, 4]  # the late event's is 3
    async with two_workers(settings) as (units_a, units_b):
        history = [d for n, e in zip(positions, in_order, strict=True) for d in delivered([e], n)]
        await apply_batch(units_a, history, RECORDING, consumer=CONSUMER)
        late_events: Sequence[Any] = delivered([late], 3)
        ratings: Sequence[Any] = delivered([rerating], 20)
        if held_first == "reprojection":
            paused, other = WatchedUnits(units_a, "hold"), WatchedUnits(units_b)
            first, second = late_events, ratings
        else:
            paused, other = WatchedUnits(units_b, "rerate"), WatchedUnits(units_a)
            first, second = ratings, late_events
        held = asyncio.create_task(apply(paused, first))
        await paused.paused.wait()
        running = asyncio.create_task(apply(other, second))
        serialised = await waited(db, running)
        paused.go()
        outcomes = [await held, await running]
    assert all(o.applied == 1 and not o.failed for o in outcomes)
    return paused, other, serialised


@pytest.mark.parametrize("apply", [in_a_batch, one_by_one], ids=["batch", "event"])
async def test_a_rerating_waits_for_a_reprojection_holding_its_product(
    settings: BranchlineSettings, db: asyncpg.Connection[Any], apply: Apply
) -> None:
    """D-15: the re-projection (paused after writing the holding again, at R1) holds the
    product's lock; the re-rating waits for it, then re-rates the holding to R4 and raises
    the holder's review (old code: the holding kept R1, no review: ``(0, 'R1')``)."""
    paused, other, serialised = await race_late_event_and_rerating(
        settings, db, "reprojection", apply
    )
    assert serialised
    assert await reviews_and_risk(db) == (1, "R4")
    assert (paused.failures, other.failures) == ([], [])


@pytest.mark.parametrize("apply", [in_a_batch, one_by_one], ids=["batch", "event"])
async def test_a_reprojection_meeting_a_held_product_reruns_it_first_without_deadlock(
    settings: BranchlineSettings, db: asyncpg.Connection[Any], apply: Apply
) -> None:
    """D-15, no deadlock: the re-rating (paused after re-rating the holdings) holds the
    product; the late event's re-projection, its client locked, does not wait for the product
    (that would close a cycle: the re-rating locks its holders next) but gives its unit up,
    which runs again taking the product first: it waits there, holding no client. Both end
    applied; no unit failed with a deadlock (old code: ``DeadlockDetectedError``), the late
    event's first unit with the wanted lock alone, and the sale replayed after the re-rating
    raises the review at R4."""
    paused, other, serialised = await race_late_event_and_rerating(settings, db, "rerating", apply)
    assert serialised
    assert "DeadlockDetectedError" not in paused.failures + other.failures
    assert (paused.failures, other.failures) == ([], ["ProductLocksWanted"])
    assert await reviews_and_risk(db) == (1, "R4")
