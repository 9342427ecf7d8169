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
from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import IntakeContext
from branchline_intake.bootstrap import create_app
from branchline_intake.domain_seam import build_decider
from branchline_shared.events.envelope import Actor, SubmittedEvent
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


# Groups of several callers (several branch systems' requests), each on streams of its own.

OTHER = Actor(id="branch-8", role="branch_system")
THIRD = Actor(id="branch-9", role="branch_system")


async def together(
    committer: GroupCommitter, *calls: tuple[list[SubmittedEvent], Actor]
) -> list[list[Outcome] | BaseException]:
    """The calls submitted at once: one group (one writer, a window that gathers them)."""
    return list(
        await asyncio.wait_for(
            asyncio.gather(
                *(committer.submit(items, submitted_by=by) for items, by in calls),
                return_exceptions=True,
            ),
            timeout=60,
        )
    )


async def test_several_callers_new_clients_are_one_statement_as_the_ordinary_way_writes_them(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Three callers' new clients, gathered in one group: decided by each caller as alone,
    written by one statement (one guess, one transaction), with each caller's outcomes, the
    ordinary way's columns, outbox rows and versions, and its positions' order (the callers'
    order, each caller's items in its own order)."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    written = guesses("written")
    guessing = GroupCommitter(ctx, writers=1, window_s=0.05)
    first, second, third = await together(
        guessing,
        ([registration(f"C-MA{run}"), registration(f"C-MB{run}")], BRANCH),
        ([registration(f"C-MC{run}")], OTHER),
        ([registration(f"C-MD{run}"), unknown_type(f"C-MX{run}")], THIRD),
    )
    assert guesses("written") == written + 1  # the one group, guessed and written
    plain = await together(
        ordinary(ctx, writers=1, window_s=0.05),
        ([registration(f"C-PA{run}"), registration(f"C-PB{run}")], BRANCH),
        ([registration(f"C-PC{run}")], OTHER),
        ([registration(f"C-PD{run}"), unknown_type(f"C-PX{run}")], THIRD),
    )
    for answers in ([first, second, third], plain):
        assert [len(x) for x in answers] == [2, 1, 2], answers  # type: ignore[arg-type]
        outcomes = [o for x in answers for o in x]  # type: ignore[union-attr]
        assert all(isinstance(o, Accepted) for o in outcomes[:4]), outcomes
        assert isinstance(outcomes[4], Refused)
        assert outcomes[4].reason is Refusal.UNKNOWN_EVENT_TYPE
    async with connected(settings) as conn:
        rows = {(p, c): await stored(conn, f"client-C-{p}{c}{run}") for p in "MP" for c in "ABCDX"}
    assert rows[("M", "X")] == rows[("P", "X")] == []
    same = ("stream_version", "type", "hashed", "envelope", "topic", "stream_at")
    for c in "ABCD":
        (guessed_row,) = rows[("M", c)]
        (plain_row,) = rows[("P", c)]
        assert {k: guessed_row[k] for k in same} == {k: plain_row[k] for k in same}, c
    guessed_outcomes = [*first, *second, *third][:4]  # type: ignore[misc]
    for c, outcome in zip("ABCD", guessed_outcomes, strict=True):
        assert rows[("M", c)][0]["event_id"] == outcome.position.event_id
        assert rows[("M", c)][0]["global_position"] == outcome.position.global_position
    for p in "MP":
        assert len({rows[(p, c)][0]["tx"] for c in "ABCD"}) == 1  # one transaction each
        order = [rows[(p, c)][0]["global_position"] for c in "ABCD"]
        assert order == sorted(order)  # the callers' order, as the ordinary way writes it


async def test_a_wrong_guess_in_one_callers_items_runs_the_group_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """One caller of a group registers a client that exists (a restarted process remembers
    nothing): the one statement fails whole, nothing of the group is written by it, and the
    ordinary way answers every caller: the others accepted once, that one refused (D-09),
    its refusal recorded once. A caller refused on the guess with nothing to write that would
    check it (a version conflict against the guessed 0) sends its group the ordinary way
    too, and is refused there at the real version."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    existing, other_existing = f"C-WE{run}", f"C-WF{run}"
    for client in (existing, other_existing):
        (first,) = await ordinary(ctx).submit([registration(client)], submitted_by=BRANCH)
        assert isinstance(first, Accepted)
    decider = build_decider(settings)
    restarted = dataclasses.replace(
        ctx, decider=decider, store=TailLoadingStore(app.state.stream_lister, decider)
    )
    guessing = GroupCommitter(restarted, writers=1, window_s=0.05)
    wrong = guesses("wrong")
    a, again, c = await together(
        guessing,
        ([registration(f"C-WA{run}")], BRANCH),
        ([registration(existing)], OTHER),
        ([registration(f"C-WC{run}"), registration(f"C-WD{run}")], THIRD),
    )
    assert guesses("wrong") == wrong + 1
    assert isinstance(a[0], Accepted)  # type: ignore[index]
    assert all(isinstance(o, Accepted) for o in c)  # type: ignore[union-attr]
    assert isinstance(again[0], Refused)  # type: ignore[index]
    assert again[0].rule == "D-09"  # type: ignore[index]
    wrong = guesses("wrong")
    stale, e = await together(
        guessing,
        ([registration(other_existing).model_copy(update={"expected_version": 3})], OTHER),
        ([registration(f"C-WG{run}")], THIRD),
    )
    assert guesses("wrong") == wrong + 1
    assert isinstance(stale[0], Refused)  # type: ignore[index]
    assert (stale[0].reason, stale[0].current_version) == (Refusal.VERSION_CONFLICT, 1)  # type: ignore[index]
    assert isinstance(e[0], Accepted)  # type: ignore[index]
    async with connected(settings) as conn:
        for stream, versions in (
            (f"client-{existing}", [1]),
            (f"refusals-{existing}", [1]),
            (f"client-{other_existing}", [1]),
            (f"refusals-{other_existing}", []),  # a version conflict is not recorded
            *((f"client-C-W{x}{run}", [1]) for x in "ACDG"),
        ):
            assert [r["stream_version"] for r in await stored(conn, stream)] == versions, stream


class _KeysFailingFor:
    """The key store, failing (a bug, an outage) for one client's key."""

    def __init__(self, keys: Any, client_id: str) -> None:
        self._keys = keys
        self._client_id = client_id

    async def key_for(self, client_id: str) -> Any:
        if client_id == self._client_id:
            raise RuntimeError("the key store failed for this caller")
        return await self._keys.key_for(client_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._keys, name)


def screened(client_id: str) -> SubmittedEvent:
    """An event with personal data (its client's key is fetched before the decisions)."""
    return registration(client_id).model_copy(
        update={"type": "client.screened", "data": {"result": "clear", "lists": ["UN"]}}
    )


async def test_a_failing_caller_of_a_guessed_group_fails_alone(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """A caller that fails before the write (its key cannot be fetched) writes nothing of the
    group: the group runs the ordinary way, where that caller fails in its savepoint and the
    others are accepted, once."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    doomed = f"C-FX{run}"
    failing = dataclasses.replace(ctx, keys=_KeysFailingFor(ctx.keys, doomed))
    guessing = GroupCommitter(failing, writers=1, window_s=0.05)
    wrong = guesses("wrong")
    a, broken, c = await together(
        guessing,
        ([registration(f"C-FA{run}")], BRANCH),
        ([registration(doomed), screened(doomed)], OTHER),
        ([registration(f"C-FC{run}")], THIRD),
    )
    assert guesses("wrong") == wrong + 1
    assert isinstance(broken, RuntimeError), broken
    assert isinstance(a[0], Accepted)  # type: ignore[index]
    assert isinstance(c[0], Accepted)  # type: ignore[index]
    async with connected(settings) as conn:
        assert await stored(conn, f"client-{doomed}") == []
        for x in "AC":
            assert [r["stream_version"] for r in await stored(conn, f"client-C-F{x}{run}")] == [1]


async def test_concurrent_groups_of_several_callers_on_the_same_new_clients(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Two groups of several callers guessed at once (two committers, as two intake
    processes), registering the same new clients from different branch systems, each
    client once per group: one stands as one statement, the other fails whole on the
    streams the first created (or is not tried) and runs the ordinary way. Each client is
    registered once, the other registration refused (D-09) and recorded once; every other
    client at 1."""
    ctx: IntakeContext = app.state.intake
    committers = [GroupCommitter(ctx, writers=1, window_s=0.1) for _ in range(2)]
    run = uuid.uuid4().hex[:6]
    shared_clients = [f"C-S{run}-{k}" for k in range(3)]
    written, wrong = guesses("written"), guesses("wrong")
    calls = [
        committers[g].submit(
            [registration(client), registration(f"C-T{run}-{g}-{k}")],
            submitted_by=Actor(id=f"branch-s{g}{k}", role="branch_system"),
        )
        for g in range(2)
        for k, client in enumerate(shared_clients)
    ]
    answers = await asyncio.wait_for(asyncio.gather(*calls), timeout=60)
    # One statement stands; the other group's, if tried (its decider may already remember
    # the clients), fails whole.
    assert guesses("written") == written + 1
    assert guesses("wrong") - wrong in (0, 1)
    for k in range(3):
        same = [answers[k][0], answers[3 + k][0]]
        assert sum(isinstance(o, Accepted) for o in same) == 1, same
        assert all(
            isinstance(o, Refused) and o.rule == "D-09" for o in same if not isinstance(o, Accepted)
        )
    assert all(isinstance(x[1], Accepted) for x in answers), answers
    async with connected(settings) as conn:
        for client in shared_clients:
            assert [r["stream_version"] for r in await stored(conn, f"client-{client}")] == [1]
            refusals = await stored(conn, f"refusals-{client}")
            assert [(r["stream_version"], r["stream_at"]) for r in refusals] == [(1, 1)]
        for g in range(2):
            for k in range(3):
                (row,) = await stored(conn, f"client-C-T{run}-{g}-{k}")
                assert row["stream_at"] == 1


async def test_a_lost_answer_to_a_joint_write_answers_every_writer_once(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Several callers' one statement whose answer is lost (it committed): each caller gets
    the error, as from a failed COMMIT; one statement, no BEGIN/COMMIT, nothing run again,
    every event stored once."""
    ctx: IntakeContext = app.state.intake
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    lost = _LostAfterWrite(pool)
    store = TailLoadingStore(PostgresEventStore(lost), ctx.decider)  # type: ignore[arg-type]
    committer = GroupCommitter(dataclasses.replace(ctx, store=store), writers=1, window_s=0.05)
    run = uuid.uuid4().hex[:6]
    try:
        results = await together(
            committer,
            ([registration(f"C-LA{run}")], BRANCH),
            ([registration(f"C-LB{run}"), registration(f"C-LC{run}")], OTHER),
        )
    finally:
        await pool.close()
    assert all(isinstance(r, ConnectionResetError) for r in results), results
    assert len(lost.statements) == 1, lost.statements
    assert "BEGIN" not in lost.statements[0]
    assert "COMMIT" not in lost.statements[0]
    async with connected(settings) as conn:
        for x in "ABC":
            assert [r["stream_version"] for r in await stored(conn, f"client-C-L{x}{run}")] == [1]
