"""A large unit of work is decided and written in parts, each part's write in flight while
the next part is decided (#12, docs/performance.md "The batch written in parts"): the same
answers and stored rows as one write, every part in the one transaction (nothing of a failed
batch is left), positions and outbox rows in decision order."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from branchline_intake.application import submit
from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import IntakeContext, submit_events
from branchline_intake.domain import RecordedDecider
from branchline_shared.events.envelope import Actor, SubmittedEvent
from branchline_shared.eventstore.postgres import PostgresUnitOfWork
from branchline_shared.settings import BranchlineSettings
from tests.support.events import registration_body

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BRANCH = Actor(id="branch-7", role="branch_system")


def registration(
    client_id: str, *, future: bool = False, event_id: uuid.UUID | None = None
) -> SubmittedEvent:
    """A client's registration; ``future``: dated a month ahead, which D-05b refuses."""
    at = datetime.now(UTC) + (timedelta(days=30) if future else timedelta(0))
    return SubmittedEvent.model_validate(registration_body(client_id, event_id, at))


def items_of(run: str) -> list[SubmittedEvent]:
    """Eleven items over three parts of four: refusals (each subject's first, so its refusal
    stream is locked in the middle of the batch), a subject registered twice, an event id sent
    twice in the batch, one sent with a fresh id."""
    sent_twice = registration(f"C-{run}-3", event_id=uuid.uuid4())
    return [
        registration(f"C-{run}-1"),
        registration(f"C-{run}-2", future=True),  # D-05b: refused, recorded
        sent_twice,
        registration(f"C-{run}-4"),
        registration(f"C-{run}-1"),  # D-09: registered twice
        sent_twice,  # the same event again: a duplicate
        registration(f"C-{run}-5", future=True),
        registration(f"C-{run}-6", event_id=uuid.uuid4()),
        registration(f"C-{run}-7"),
        registration(f"C-{run}-8"),
        registration(f"C-{run}-9"),
    ]


def shape(outcome: Outcome, run: str) -> tuple[Any, ...]:
    if isinstance(outcome, Accepted):
        p = outcome.position
        return ("accepted", p.stream_id.replace(run, "*"), p.stream_version, outcome.duplicate)
    assert isinstance(outcome, Refused)
    return ("refused", outcome.reason, outcome.rule)


async def stored_rows(settings: BranchlineSettings, run: str) -> list[tuple[str, int, int]]:
    """The run's events as (stream, version, outbox id), in global position order."""
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT e.stream_id, e.stream_version, o.id FROM es_events e "
            "JOIN es_outbox o USING (event_id) WHERE e.stream_id LIKE '%' || $1 || '%' "
            "ORDER BY e.global_position",
            run,
        )
    finally:
        await conn.close()
    return [(r["stream_id"].replace(run, "*"), r["stream_version"], r["id"]) for r in rows]


async def streams_off_their_last_event(settings: BranchlineSettings, run: str) -> list[Any]:
    """The run's streams whose version is not their last event's (0 for none): a new stream
    is created at the version its items would reach (#12), and must end at the real one."""
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT s.stream_id, s.version, coalesce(max(e.stream_version), 0) AS last "
            "FROM es_streams s LEFT JOIN es_events e USING (stream_id) "
            "WHERE s.stream_id LIKE '%' || $1 || '%' GROUP BY s.stream_id, s.version",
            run,
        )
    finally:
        await conn.close()
    assert rows  # the run's streams are there
    return [tuple(r) for r in rows if r["version"] != r["last"]]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each write statement of a unit of work carried."""
    counted: list[int] = []
    commit = PostgresUnitOfWork.commit

    async def counting(self: PostgresUnitOfWork) -> Any:
        counted.append(len(self._staged))
        return await commit(self)

    monkeypatch.setattr(PostgresUnitOfWork, "commit", counting)
    return counted


async def test_parts_answer_and_store_what_one_write_does(
    app: FastAPI, settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch, writes: list[int]
) -> None:
    # the rules' default policy (D-05b's five minutes; the test settings allow more)
    ctx = dataclasses.replace(app.state.intake, decider=RecordedDecider())
    seen: dict[int, tuple[list[tuple[Any, ...]], list[tuple[str, int]]]] = {}
    for part in (1_000_000, 4):
        monkeypatch.setattr(submit, "_PART", part)
        writes.clear()
        run = uuid.uuid4().hex[:6]
        items = items_of(run)
        shapes: list[tuple[Any, ...]] = []
        for _ in range(2):  # again: the ids sent are duplicates, the rest decided anew
            outcomes = await asyncio.wait_for(submit_events(ctx, items, submitted_by=BRANCH), 30)
            shapes += [shape(o, run) for o in outcomes]
        rows = await stored_rows(settings, run)
        assert await streams_off_their_last_event(settings, run) == []
        outbox_ids = [o for _, _, o in rows]
        assert outbox_ids == sorted(outbox_ids)  # outbox rows in the events' order
        seen[part] = (shapes, [(s, v) for s, v, _ in rows])
        if part == 4:  # a part's events (accepted or refusals) in a write of their own
            assert len(writes) >= 6
            assert max(writes) <= 4
    assert seen[4] == seen[1_000_000]
    shapes = seen[4][0]
    assert shapes[:11] == [
        ("accepted", "client-C-*-1", 1, False),
        ("refused", Refusal.RULE_VIOLATION, "D-05b"),
        ("accepted", "client-C-*-3", 1, False),
        ("accepted", "client-C-*-4", 1, False),
        ("refused", Refusal.RULE_VIOLATION, "D-09"),
        ("accepted", "client-C-*-3", 1, True),
        ("refused", Refusal.RULE_VIOLATION, "D-05b"),
        ("accepted", "client-C-*-6", 1, False),
        ("accepted", "client-C-*-7", 1, False),
        ("accepted", "client-C-*-8", 1, False),
        ("accepted", "client-C-*-9", 1, False),
    ]


async def test_a_failed_part_leaves_nothing_of_the_batch(
    app: FastAPI, settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second part's write fails after the first was written: the transaction is rolled
    back whole, so no event of the batch is stored."""
    ctx: IntakeContext = app.state.intake
    monkeypatch.setattr(submit, "_PART", 4)
    commit = PostgresUnitOfWork.commit
    calls: list[int] = []

    async def second_fails(self: PostgresUnitOfWork) -> Any:
        calls.append(len(self._staged))
        if len(calls) == 2:
            raise RuntimeError("the second part's write failed")
        return await commit(self)

    monkeypatch.setattr(PostgresUnitOfWork, "commit", second_fails)
    run = uuid.uuid4().hex[:6]
    items = [registration(f"C-{run}-{i}") for i in range(10)]
    with pytest.raises(RuntimeError, match="second part"):
        await asyncio.wait_for(submit_events(ctx, items, submitted_by=BRANCH), 30)
    assert calls[0] == 4
    assert await stored_rows(settings, run) == []
    # and the pool's connection is usable again: the same batch is written whole
    monkeypatch.setattr(PostgresUnitOfWork, "commit", commit)
    outcomes = await asyncio.wait_for(submit_events(ctx, items, submitted_by=BRANCH), 30)
    assert all(isinstance(o, Accepted) and not o.duplicate for o in outcomes)
    assert len(await stored_rows(settings, run)) == 10
