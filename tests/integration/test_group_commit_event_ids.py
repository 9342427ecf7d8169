"""A group commit whose callers send their own event ids (Round 25, #12, docs/intake.md,
"Group commit"): such a group is tried as the one self-committing statement too, the ids
taken for not stored and checked by the write itself (``es_events``' unique ``event_id``).
A group whose every id is new is written by that one statement, each caller answered as the
ordinary way answers it (a duplicate inside the group, a reused id); a group with a resent
id fails that statement whole and runs the ordinary way, where the lookup answers each
caller (202 the same answer, 409 ``idempotency-conflict``) and a refused caller fails alone.
Until Round 25 any sent id sent the group the ordinary way: a lookup, a savepoint and a
write per caller."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.application.history_tail import TailLoadingStore
from branchline_intake.application.outcomes import Accepted, Refusal, Refused
from branchline_intake.application.submit import IntakeContext
from branchline_shared.events.envelope import Actor
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_group_commit import BRANCH, registration
from tests.integration.test_group_commit_guessed import (
    OTHER,
    THIRD,
    connected,
    guesses,
    ordinary,
    restarted,
    stored,
    together,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

FOURTH = Actor(id="branch-10", role="branch_system")
FIFTH = Actor(id="branch-11", role="branch_system")


class _RecordingPool:
    """The store's pool, the text of every statement sent through it recorded."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self.statements: list[str] = []

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            yield _RecordingConn(conn, self.statements)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class _RecordingConn:
    def __init__(self, conn: Any, statements: list[str]) -> None:
        self._conn = conn
        self._statements = statements

    async def fetch(self, query: str, *args: Any) -> Any:
        self._statements.append(query)
        return await self._conn.fetch(query, *args)

    async def execute(self, query: str, *args: Any) -> Any:
        self._statements.append(query)
        return await self._conn.execute(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        self._statements.append(query)
        return await self._conn.fetchval(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@contextlib.asynccontextmanager
async def recorded_committer(
    ctx: IntakeContext, settings: BranchlineSettings
) -> AsyncIterator[tuple[GroupCommitter, list[str]]]:
    """A group committer (one writer, a window that gathers the callers into one group) on
    a store whose statements are recorded."""
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
    recording = _RecordingPool(pool)
    store = TailLoadingStore(PostgresEventStore(recording), ctx.decider)  # type: ignore[arg-type]
    try:
        yield (
            GroupCommitter(dataclasses.replace(ctx, store=store), writers=1, window_s=0.1),
            recording.statements,
        )
    finally:
        await pool.close()


async def test_callers_with_new_ids_are_written_by_the_one_statement(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Five callers in one group, every event with its own id: three new ids on clients of
    their own; one caller sends one event twice (same id, same body: the second is that
    event again); one reuses another caller's id for another client (409). One statement
    writes the group (no BEGIN, lookup, savepoint or COMMIT), each caller answered as the
    ordinary way answers it, the ids stored as sent. Before Round 25: the ordinary way, a
    lookup, a savepoint and a write per caller."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    ids = [uuid.uuid4() for _ in range(4)]
    twice = registration(f"C-IT{run}", ids[3])
    written, wrong = guesses("written"), guesses("wrong")
    async with recorded_committer(ctx, settings) as (committer, statements):
        one, two, three, again, reused = await together(
            committer,
            ([registration(f"C-IA{run}", ids[0])], BRANCH),
            ([registration(f"C-IB{run}", ids[1])], OTHER),
            ([registration(f"C-IC{run}", ids[2])], THIRD),
            ([twice, twice], FOURTH),
            ([registration(f"C-IR{run}", ids[0])], FIFTH),
        )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong)
    assert len(statements) == 1, statements  # the one guessed write
    assert "created AS" in statements[0]
    for answer, sent in zip((one, two, three), ids, strict=False):
        assert isinstance(answer, list), answer
        [outcome] = answer
        assert isinstance(outcome, Accepted), outcome
        assert (outcome.position.event_id, outcome.duplicate) == (sent, False)
    assert isinstance(again, list), again
    first, second = again
    assert isinstance(first, Accepted), again
    assert isinstance(second, Accepted), again
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.position == first.position
    assert isinstance(reused, list), reused
    [conflict] = reused
    assert isinstance(conflict, Refused), conflict
    assert conflict.reason is Refusal.IDEMPOTENCY_CONFLICT
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-I{c}{run}") for c in "ABCTR"}
    assert [r["event_id"] for c in "ABCT" for r in rows[c]] == ids
    assert rows["R"] == []  # its stream taken, nothing written to it
    assert len({r["tx"] for c in "ABCT" for r in rows[c]}) == 1


async def test_a_group_with_a_resent_id_is_answered_caller_by_caller_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """One group (a process that remembers nothing, so every caller's streams are taken for
    new): a caller resends a stored event (same id, same body), one reuses a stored id for
    another event, one registers a client that exists (D-09), one sends a new id. The one
    statement fails whole on the stored ids; the ordinary way answers each: 202 the same
    answer (the stored position, a duplicate), 409 ``idempotency-conflict``, the refusal
    (recorded once), 202 for the new one; nothing stored twice. Before Round 25 no statement
    was tried (the same answers, the ordinary way only)."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    kept, other_kept, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    resent = registration(f"C-RK{run}", kept)
    first, second, existing = await together(
        ordinary(ctx, writers=1, window_s=0.05),
        ([resent], BRANCH),
        ([registration(f"C-RO{run}", other_kept)], OTHER),
        ([registration(f"C-RX{run}")], THIRD),
    )
    assert isinstance(second, list)
    assert isinstance(second[0], Accepted)
    assert isinstance(first, list)
    assert isinstance(first[0], Accepted)
    written, wrong = guesses("written"), guesses("wrong")
    again, reused, refused, fresh = await together(
        GroupCommitter(restarted(app, settings), writers=1, window_s=0.1),
        ([resent], BRANCH),
        ([registration(f"C-RN{run}", other_kept)], OTHER),
        ([registration(f"C-RX{run}", uuid.uuid4())], THIRD),
        ([registration(f"C-RF{run}", new)], FOURTH),
    )
    # After the refused statement the store names every stored id and existing stream
    # (Round 27): those three callers go the ordinary way, the new one is guessed again
    # and written (Round 26: a second wrong guess, the whole group the ordinary way).
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert isinstance(again, list), again
    [same] = again
    assert isinstance(same, Accepted), same
    assert (same.position, same.duplicate) == (first[0].position, True)
    assert isinstance(reused, list), reused
    [conflict] = reused
    assert isinstance(conflict, Refused)
    assert conflict.reason is Refusal.IDEMPOTENCY_CONFLICT
    assert isinstance(refused, list), refused
    [rule] = refused
    assert isinstance(rule, Refused), rule
    assert rule.rule == "D-09", rule
    assert isinstance(fresh, list), fresh
    [accepted] = fresh
    assert isinstance(accepted, Accepted)
    assert accepted.position.event_id == new
    assert isinstance(existing, list)
    assert isinstance(existing[0], Accepted)
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-R{c}{run}") for c in "KONXF"}
        refusals = await stored(conn, f"refusals-C-RX{run}")
    assert [r["event_id"] for r in rows["K"]] == [kept]
    assert [r["event_id"] for r in rows["O"]] == [other_kept]
    assert rows["N"] == []
    assert len(rows["X"]) == 1
    assert [r["event_id"] for r in rows["F"]] == [new]
    assert [(r["stream_version"], r["stream_at"]) for r in refusals] == [(1, 1)]
