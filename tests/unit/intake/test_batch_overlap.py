"""A batch's next part is decided while the part before is being written (#12): intake's
Python runs while the database works, instead of after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from intake_story import submitted_registrations

from branchline_intake.application import submit
from branchline_intake.application.outcomes import Accepted
from branchline_intake.application.submit import IntakeContext, submit_events
from branchline_intake.domain import RecordedDecider
from branchline_shared.clock import FixedClock
from branchline_shared.crypto.keystore import InMemoryClientKeyStore
from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.eventstore.memory import InMemoryEventStore, InMemoryUnitOfWork
from branchline_shared.eventstore.ports import StoredPosition

pytestmark = pytest.mark.unit

_NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class _SlowWrites:
    """The in-memory unit of work, each write taking a few turns of the event loop (as a
    statement in flight does), every step logged."""

    def __init__(self, inner: InMemoryUnitOfWork, log: list[str]) -> None:
        self._inner = inner
        self._log = log
        self._writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def commit(self) -> list[StoredPosition]:
        self._writes += 1
        number = self._writes
        self._log.append(f"write {number} sent")
        positions = await self._inner.commit()
        for _ in range(20):
            await asyncio.sleep(0)
        self._log.append(f"write {number} done")
        return positions


class _Store(InMemoryEventStore):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self._log = log

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Any]:
        async with super().unit_of_work() as uow:
            yield _SlowWrites(uow, self._log)


class _LoggingDecider(RecordedDecider):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self._log = log

    def __call__(
        self,
        history: Sequence[RecordedEvent],
        candidate: RecordedEvent,
        related: Any = None,
        **kwargs: Any,
    ) -> Any:
        self._log.append(f"decide {candidate.client_id}")
        return super().__call__(history, candidate, related or {}, **kwargs)


def test_the_next_part_is_decided_while_a_part_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(submit, "_PART", 3)
    log: list[str] = []
    ctx = IntakeContext(
        store=_Store(log),
        clock=FixedClock(_NOW),
        decider=_LoggingDecider(log),
        topic="t",
        keys=InMemoryClientKeyStore(),
        hash_key=b"k" * 32,
    )
    items = submitted_registrations(7, _NOW)
    outcomes = asyncio.run(submit_events(ctx, items, submitted_by=Actor(id="b", role="admin")))
    assert all(isinstance(o, Accepted) for o in outcomes)
    positions = [o.position.global_position for o in outcomes if isinstance(o, Accepted)]
    assert positions == sorted(positions) == list(range(1, 8))
    assert log == [
        "decide C-0",
        "decide C-1",
        "decide C-2",
        "write 1 sent",
        "decide C-3",  # while the first part is written
        "decide C-4",
        "decide C-5",
        "write 1 done",
        "write 2 sent",
        "decide C-6",
        "write 2 done",
        "write 3 sent",
        "write 3 done",
    ]


def test_a_failed_part_leaves_nothing_in_the_in_memory_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fake is all or nothing as PostgreSQL's transaction is: the second part's write
    fails after the first part was written, and the store holds none of the batch."""
    monkeypatch.setattr(submit, "_PART", 3)
    store = InMemoryEventStore()
    commit = InMemoryUnitOfWork.commit
    calls: list[int] = []

    async def second_fails(self: InMemoryUnitOfWork) -> list[StoredPosition]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the second part's write failed")
        return await commit(self)

    monkeypatch.setattr(InMemoryUnitOfWork, "commit", second_fails)
    ctx = IntakeContext(
        store=store,
        clock=FixedClock(_NOW),
        decider=RecordedDecider(),
        topic="t",
        keys=InMemoryClientKeyStore(),
        hash_key=b"k" * 32,
    )
    items = submitted_registrations(7, _NOW)
    admin = Actor(id="b", role="admin")
    with pytest.raises(RuntimeError, match="second part"):
        asyncio.run(submit_events(ctx, items, submitted_by=admin))
    assert len(calls) == 2
    assert store.outbox == []
    assert asyncio.run(store.read_stream("client-C-0")) == []
    # the same batch again, written whole: every stream from version 1
    monkeypatch.setattr(InMemoryUnitOfWork, "commit", commit)
    outcomes = asyncio.run(submit_events(ctx, items, submitted_by=admin))
    assert [o.position.stream_version for o in outcomes if isinstance(o, Accepted)] == [1] * 7
    assert len(store.outbox) == 7
