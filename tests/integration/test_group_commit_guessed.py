"""A group commit of new streams in one self-committing statement (#12, docs/performance.md):
a group that may be new streams only is decided as such and written by one statement that
creates them, commits by itself and answers the positions; a stream that exists, or a
decision that needs more (a refusal to record, a version conflict), writes nothing and the
group runs the ordinary way, with the outcomes the ordinary way gives."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from branchline_intake.application.group_commit import GROUP_GUESSES, GroupCommitter
from branchline_intake.application.history_tail import TailLoadingStore
from branchline_intake.application.outcomes import Accepted, Refusal, Refused
from branchline_intake.application.submit import IntakeContext
from branchline_intake.bootstrap import create_app
from branchline_intake.domain_seam import build_decider
from branchline_shared.events.envelope import SubmittedEvent
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.http.auth import Role
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_group_commit import BRANCH, registration
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
async def app(settings: BranchlineSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with serve(application):
        yield application


def guesses(outcome: str) -> float:
    return float(GROUP_GUESSES.labels(outcome=outcome)._value.get())


def ordinary(ctx: IntakeContext, **kwargs: Any) -> GroupCommitter:
    return GroupCommitter(ctx, guess_new_streams=False, **kwargs)


def unknown_type(client_id: str) -> SubmittedEvent:
    return registration(client_id).model_copy(update={"type": "client.no_such_type"})


@contextlib.asynccontextmanager
async def connected(settings: BranchlineSettings) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def stored(conn: asyncpg.Connection[Any], stream_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT e.event_id, e.stream_id, e.stream_version, e.type, e.client_id, "
            "e.submission_hash IS NOT NULL AS hashed, e.global_position, e.tx_id::text AS tx, "
            "e.envelope - 'event_id' - 'recorded_at' - 'client_id' - 'stream_id' AS envelope, "
            "o.topic, o.message_key, s.version AS stream_at "
            "FROM es_events e JOIN es_outbox o USING (event_id) "
            "JOIN es_streams s USING (stream_id) WHERE e.stream_id = $1 "
            "ORDER BY e.stream_version",
            stream_id,
        )
    )


async def test_new_clients_are_written_by_one_statement_as_the_ordinary_way_writes_them(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    ctx: IntakeContext = app.state.intake
    guessing = GroupCommitter(ctx, writers=1)
    run = uuid.uuid4().hex[:6]
    written = guesses("written")
    (one,) = await guessing.submit([registration(f"C-G{run}")], submitted_by=BRANCH)
    two, three = await guessing.submit(
        [registration(f"C-H{run}"), registration(f"C-I{run}")], submitted_by=BRANCH
    )
    assert guesses("written") == written + 2
    (plain,) = await ordinary(ctx, writers=1).submit(
        [registration(f"C-P{run}")], submitted_by=BRANCH
    )
    for outcome in (one, two, three, plain):
        assert isinstance(outcome, Accepted), outcome
        assert (outcome.position.stream_version, outcome.duplicate) == (1, False)
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-{c}{run}") for c in "GHIP"}
    for c, outcome in zip("GHIP", (one, two, three, plain), strict=True):
        (row,) = rows[c]
        assert row["event_id"] == outcome.position.event_id  # type: ignore[union-attr]
        assert row["global_position"] == outcome.position.global_position  # type: ignore[union-attr]
        assert (row["client_id"], row["message_key"]) == (f"C-{c}{run}", f"C-{c}{run}")
    # Columns, outbox row and stream version as the ordinary way stores them.
    same = ("stream_version", "type", "hashed", "envelope", "topic", "stream_at")
    for c in "GHI":
        assert {k: rows[c][0][k] for k in same} == {k: rows["P"][0][k] for k in same}
    assert rows["H"][0]["tx"] == rows["I"][0]["tx"] != rows["G"][0]["tx"]  # one statement each
    assert rows["H"][0]["global_position"] < rows["I"][0]["global_position"]


async def test_a_guess_that_does_not_hold_runs_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """A client that exists, registered again (the guess: new; D-09 refuses it) or sent
    another event by a process that remembers nothing of it (a restart): the statement fails
    whole, and the ordinary way answers, the refusal recorded, the versions right."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client = f"C-E{run}"
    (first,) = await ordinary(ctx).submit([registration(client)], submitted_by=BRANCH)
    assert isinstance(first, Accepted)
    # A restarted process: a decider and a store that remember nothing.
    decider = build_decider(settings)
    restarted = dataclasses.replace(
        ctx, decider=decider, store=TailLoadingStore(app.state.stream_lister, decider)
    )
    guessing = GroupCommitter(restarted)
    wrong = guesses("wrong")
    (again,) = await guessing.submit([registration(client)], submitted_by=BRANCH)
    assert isinstance(again, Refused), again
    assert again.rule == "D-09"
    assert guesses("wrong") == wrong + 1
    # Refused against the guessed version (0) and nothing to write that would check it.
    (stale,) = await guessing.submit(
        [registration(client).model_copy(update={"expected_version": 3})], submitted_by=BRANCH
    )
    assert isinstance(stale, Refused)
    assert (stale.reason, stale.current_version) == (Refusal.VERSION_CONFLICT, 1)
    async with connected(settings) as conn:
        assert [r["stream_version"] for r in await stored(conn, f"client-{client}")] == [1]
        refusals = await stored(conn, f"refusals-{client}")
        assert [(r["stream_version"], r["stream_at"]) for r in refusals] == [(1, 1)]
        assert (
            await conn.fetchval(
                "SELECT version FROM es_streams WHERE stream_id = $1", f"client-{client}"
            )
            == 1
        )


async def test_a_refused_item_never_aborts_the_others(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """A refusal that needs no record (an unknown type) leaves the guess standing; one that
    is recorded (D-09) sends the group the ordinary way: either way every other item is
    accepted, once."""
    ctx: IntakeContext = app.state.intake
    guessing = GroupCommitter(ctx, writers=1)
    run = uuid.uuid4().hex[:6]
    written = guesses("written")
    kept, unknown = await guessing.submit(
        [registration(f"C-K{run}"), unknown_type(f"C-Q{run}")], submitted_by=BRANCH
    )
    assert isinstance(kept, Accepted)
    assert isinstance(unknown, Refused)
    assert unknown.reason is Refusal.UNKNOWN_EVENT_TYPE
    assert guesses("written") == written + 1
    wrong = guesses("wrong")
    a, twice, b = await guessing.submit(
        [registration(f"C-A{run}"), registration(f"C-A{run}"), registration(f"C-B{run}")],
        submitted_by=BRANCH,
    )
    assert guesses("wrong") == wrong + 1
    assert isinstance(a, Accepted)
    assert isinstance(b, Accepted)
    assert isinstance(twice, Refused)
    assert twice.rule == "D-09"
    async with connected(settings) as conn:
        for stream, versions in (
            (f"client-C-A{run}", [1]),
            (f"client-C-B{run}", [1]),
            (f"refusals-C-A{run}", [1]),
            (f"client-C-K{run}", [1]),
        ):
            assert [r["stream_version"] for r in await stored(conn, stream)] == versions, stream


async def test_concurrent_groups_on_the_same_new_client(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Groups written at once (two writers, one caller) registering the same new client: one
    registration stands, every other is refused (D-09) and recorded once, in order."""
    committer: GroupCommitter = app.state.group_commit
    run = uuid.uuid4().hex[:6]
    client = f"C-C{run}"
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(committer.submit([registration(client)], submitted_by=BRANCH) for _ in range(12)),
            *(
                committer.submit([registration(f"C-D{run}-{i}")], submitted_by=BRANCH)
                for i in range(12)
            ),
        ),
        timeout=60,
    )
    same = [a[0] for a in answers[:12]]
    assert sum(isinstance(o, Accepted) for o in same) == 1, same
    assert all(
        isinstance(o, Refused) and o.rule == "D-09" for o in same if not isinstance(o, Accepted)
    )
    assert all(isinstance(a[0], Accepted) for a in answers[12:]), answers[12:]
    async with connected(settings) as conn:
        assert [r["stream_version"] for r in await stored(conn, f"client-{client}")] == [1]
        refusals = await stored(conn, f"refusals-{client}")
        assert [r["stream_version"] for r in refusals] == list(range(1, 12))
        assert {r["stream_at"] for r in refusals} == {11}
        for i in range(12):
            (row,) = await stored(conn, f"client-C-D{run}-{i}")
            assert row["stream_at"] == 1


class _LostAfterWrite:
    """The store's pool, losing the connection right after the guessed write ran."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self.statements: list[str] = []

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            yield _Conn(conn, self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class _Conn:
    def __init__(self, conn: Any, pool: _LostAfterWrite) -> None:
        self._conn = conn
        self._pool = pool

    async def fetch(self, query: str, *args: Any) -> Any:
        self._pool.statements.append(query)
        rows = await self._conn.fetch(query, *args)
        if "created AS" in query:
            raise ConnectionResetError("lost the database after the write")
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_a_guessed_write_is_one_statement_and_never_run_twice(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """One statement, no BEGIN, no COMMIT; a write whose answer is lost (it may have
    committed) is answered with the error, as a failed COMMIT is, and not run again."""
    ctx: IntakeContext = app.state.intake
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    lost = _LostAfterWrite(pool)
    store = TailLoadingStore(PostgresEventStore(lost), ctx.decider)  # type: ignore[arg-type]
    committer = GroupCommitter(dataclasses.replace(ctx, store=store), writers=1)
    run = uuid.uuid4().hex[:6]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                committer.submit([registration(f"C-L{run}")], submitted_by=BRANCH),
                return_exceptions=True,
            ),
            timeout=30,
        )
    finally:
        await pool.close()
    assert isinstance(results[0], ConnectionResetError), results
    assert len(lost.statements) == 1, lost.statements
    assert "BEGIN" not in lost.statements[0]
    assert "COMMIT" not in lost.statements[0]
    async with connected(settings) as conn:
        assert [r["stream_version"] for r in await stored(conn, f"client-C-L{run}")] == [1]


async def test_the_benchmarks_posts_take_one_statement(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    """The single POST as the benchmark sends it (a branch system's token, a new client, no
    id): its group is written by the one statement, and answered 202 with its position."""
    run = uuid.uuid4().hex[:8]
    written = guesses("written")
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/events",
                    json=registration(f"C-{run}-{i}").model_dump(mode="json", exclude_none=True),
                    headers=tokens.headers(Role.BRANCH_SYSTEM),
                )
                for i in range(8)
            )
        )
    assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
    assert guesses("written") > written
    assert guesses("written") - written <= 8
