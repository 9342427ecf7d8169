"""Deciding without re-reading history (docs/performance.md): once intake remembers a
client's state, a write reads only the events after it, and still sees what another intake
process appended meanwhile."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from branchline_intake.application.history_tail import TailLoadingStore
from branchline_intake.application.outcomes import Accepted, Refused
from branchline_intake.application.submit import IntakeContext, submit_events
from branchline_intake.domain import RecordedDecider
from branchline_shared.events.envelope import Actor, RecordedEvent, SubmittedEvent
from branchline_shared.eventstore.postgres import PostgresEventStore, PostgresUnitOfWork
from tests.support.examples import example_data

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

BRANCH = Actor(id="branch-7", role="branch_system")
_START = datetime.now(UTC) - timedelta(minutes=5)


def submitted(event_type: str, client_id: str, minute: int = 0) -> SubmittedEvent:
    return SubmittedEvent.model_validate(
        {
            "type": event_type,
            # Recent, in order: intake refuses unflagged late entries (D-05b).
            "occurred_at": (_START + timedelta(seconds=minute)).isoformat(),
            "client_id": client_id,
            "branch_id": "BR-001",
            "channel": "walk_in",
            "actor": {"id": "staff-17", "role": "teller"},
            "data": example_data(event_type),
        }
    )


class _Reads:
    """What the unit of work read from the database: whole streams and tails."""

    def __init__(self) -> None:
        self.whole: list[str] = []
        self.tail_rows = 0


def _spying_store(ctx: IntakeContext, reads: _Reads) -> PostgresEventStore:
    inner = ctx.store._store  # type: ignore[attr-defined]
    pool = inner._pool

    class SpyUnitOfWork(PostgresUnitOfWork):
        async def load_streams(self, stream_ids: Any) -> dict[str, list[RecordedEvent]]:
            reads.whole.extend(stream_ids)
            return await super().load_streams(stream_ids)

        async def load_stream_tails(
            self, from_versions: Mapping[str, int]
        ) -> dict[str, list[RecordedEvent]]:
            tails = await super().load_stream_tails(from_versions)
            reads.tail_rows += sum(len(t) for t in tails.values())
            return tails

    class SpyStore(PostgresEventStore):
        def unit_of_work(self) -> Any:
            original = super().unit_of_work()

            class Wrapped:
                async def __aenter__(self) -> PostgresUnitOfWork:
                    uow = await original.__aenter__()
                    uow.__class__ = SpyUnitOfWork
                    return uow

                async def __aexit__(self, *exc: Any) -> Any:
                    return await original.__aexit__(*exc)

            return Wrapped()

    return SpyStore(pool)


async def test_a_remembered_client_is_decided_on_the_events_after_its_state(
    app: FastAPI,
) -> None:
    ctx: IntakeContext = app.state.intake
    reads = _Reads()
    decider = RecordedDecider()
    mine = dataclasses.replace(
        ctx, decider=decider, store=TailLoadingStore(_spying_store(ctx, reads), decider)
    )
    history = [submitted("client.registered", "C-T1")] + [
        submitted("client.consent_granted", "C-T1", minute=i + 1) for i in range(40)
    ]
    outcomes = await submit_events(mine, history, submitted_by=BRANCH)
    assert all(isinstance(o, Accepted) for o in outcomes), outcomes
    assert reads.whole == ["client-C-T1"]  # the first write knew nothing: read it whole
    reads.whole.clear()

    (again,) = await submit_events(
        mine, [submitted("client.consent_granted", "C-T1", 50)], submitted_by=BRANCH
    )
    assert isinstance(again, Accepted)
    assert again.position.stream_version == 42
    assert reads.whole == []
    # The state remembered when the last event was decided, plus that event: O(1) rows,
    # not the 41 of the client's history.
    assert 1 <= reads.tail_rows <= 2

    # The remembered state still decides by the rules: the client is registered already.
    (twice,) = await submit_events(
        mine, [submitted("client.registered", "C-T1", 51)], submitted_by=BRANCH
    )
    assert isinstance(twice, Refused)
    assert twice.rule == "D-09"
    assert reads.whole == []


async def test_events_another_process_appended_are_folded_on(app: FastAPI) -> None:
    ctx: IntakeContext = app.state.intake
    inner = ctx.store._store  # type: ignore[attr-defined]

    def process() -> IntakeContext:
        decider = RecordedDecider()
        return dataclasses.replace(ctx, decider=decider, store=TailLoadingStore(inner, decider))

    first, second = process(), process()
    start = [submitted("client.registered", "C-T2"), submitted("client.consent_granted", "C-T2", 1)]
    assert all(
        isinstance(o, Accepted) for o in await submit_events(first, start, submitted_by=BRANCH)
    )
    # The other process asks for erasure; the first still remembers the state before it.
    (erasure,) = await submit_events(
        second, [submitted("client.erasure_requested", "C-T2", 2)], submitted_by=BRANCH
    )
    assert isinstance(erasure, Accepted)
    (personal,) = await submit_events(
        first, [submitted("client.personal_data_recorded", "C-T2", 3)], submitted_by=BRANCH
    )
    assert isinstance(personal, Refused), personal
    assert personal.rule == "D-04"
