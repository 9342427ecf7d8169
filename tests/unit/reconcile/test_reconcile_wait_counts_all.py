"""``branchline reconcile --repair --wait`` waits for every missing event, not only the few the
report kept (#12): a world stand-in where five events are missing, one kept, and the consumer
applies one more of them each time it is asked anything."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from branchline_cli import reconcile_commands
from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.reconcile.compare import KINDS, AppliedEvent, ConsumerReport, StoreEvent
from branchline_shared.reconcile.running import ConsumerSource, Reconciliation

MISSING = [
    StoreEvent(
        "intake", uuid.UUID(int=n), LogPosition(7, n), f"client-{n}", 1, f"C-{n}", "t", False
    )
    for n in range(1, 6)
]


class World:
    """Five events missing; each question to the consumer finds one more applied."""

    def __init__(self) -> None:
        self.applied = 0
        self.counts: list[dict[str, Any]] = []

    def tick(self) -> None:
        self.applied = min(len(MISSING), self.applied + 1)

    def report(self, keep: int | None) -> ConsumerReport:
        missing = MISSING[self.applied :]
        totals = dict.fromkeys(KINDS, 0) | {"missing": len(missing)}
        shown = missing if keep is None else missing[:keep]
        return ConsumerReport("followup-worker", missing=list(shown), totals=totals)

    async def reconcile(
        self,
        stores: Any,
        consumers: Any,
        *,
        repair: bool = False,
        keep: int | None = None,
        **options: Any,
    ) -> Reconciliation:
        if repair:
            first = Reconciliation([self.report(keep)], requeued={"intake": len(MISSING)})
            first.ends = {"intake": MISSING[-1].log_position}  # where the first read ended
            return first
        self.tick()
        self.counts.append(options)
        return Reconciliation([self.report(keep)])

    async def has(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        self.tick()
        return {e.event_id for e in MISSING[: self.applied]} & set(ids)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    made = World()

    async def applied() -> list[AppliedEvent]:
        return []

    @contextlib.asynccontextmanager
    async def sources(settings: Any) -> AsyncIterator[list[ConsumerSource]]:
        yield [ConsumerSource("followup-worker", "dlq", applied, has=made.has)]

    monkeypatch.setattr(reconcile_commands, "consumer_sources", sources)
    monkeypatch.setattr(reconcile_commands, "store_sources", lambda settings: [])
    monkeypatch.setattr(reconcile_commands, "reconcile", made.reconcile)
    monkeypatch.setattr(reconcile_commands, "WAIT_ROUND_S", 0, raising=False)
    return made


SETTINGS: Any = SimpleNamespace(
    reconcile_self_check_order_page=1000, reconcile_findings_kept=1000, kafka_bootstrap="b"
)


async def test_the_wait_lasts_until_every_missing_event_is_applied(world: World) -> None:
    first, second = await reconcile_commands.reconcile_stack(
        SETTINGS, repair=True, grace_s=0, wait_s=30, keep=1
    )
    assert first.missing == 5
    assert len(first.reports[0].missing) == 1  # one kept; the wait is for all five
    assert second is not None
    assert second.missing == 0
    assert world.counts  # counted again, as far as the first reconcile read, keeping nothing
    assert all(
        c.get("log_only") and c.get("upto") == {"intake": MISSING[-1].log_position}
        for c in world.counts[:-1]
    )


async def test_the_wait_ends_at_its_deadline_with_what_is_still_missing(world: World) -> None:
    world.tick = lambda: None  # type: ignore[method-assign]
    _, second = await reconcile_commands.reconcile_stack(
        SETTINGS, repair=True, grace_s=0, wait_s=0.05, keep=1
    )
    assert second is not None
    assert second.missing == 5
