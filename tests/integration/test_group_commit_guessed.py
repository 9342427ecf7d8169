"""A group commit of new streams in one self-committing statement (#12, docs/performance.md):
a group that may be new streams only is decided as such and written by one statement that
creates them, commits by itself and answers the positions; a stream that exists, or a
decision that needs more (a refusal to record, a version conflict), writes nothing and the
group runs the ordinary way, with the outcomes the ordinary way gives."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
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
from branchline_shared.events.envelope import Actor, RecordedEvent, SubmittedEvent, Submitter
from branchline_shared.eventstore.ports import GuessWrong
from branchline_shared.eventstore.postgres import STALE_STREAM_GUESS, PostgresEventStore
from branchline_shared.http.auth import Role
from branchline_shared.postgres.commit_outcome import CommitOutcomeUnknown
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_group_commit import BRANCH, registration
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


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


def _is_guessed_write(query: str) -> bool:
    return "created AS" in query or "taken AS" in query


class _GuessedWritePool:
    """The store's pool with its guessed writes (the one self-committing statement) sent
    through ``guessed``, every statement's text recorded; what a guessed write meets is the
    subclass's."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self.statements: list[str] = []

    async def guessed(self, conn: Any, query: str, args: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            yield _GuessedWriteConn(conn, self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class _GuessedWriteConn:
    def __init__(self, conn: Any, pool: _GuessedWritePool) -> None:
        self._conn = conn
        self._pool = pool

    async def fetch(self, query: str, *args: Any) -> Any:
        self._pool.statements.append(query)
        if _is_guessed_write(query):
            return await self._pool.guessed(self._conn, query, args)
        return await self._conn.fetch(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _LostAfterWrite(_GuessedWritePool):
    """The store's pool, losing the connection right after the guessed write ran (closed
    under the client: its server session ends, the pool opens another for what follows)."""

    async def guessed(self, conn: Any, query: str, args: tuple[Any, ...]) -> Any:
        await conn.fetch(query, *args)
        conn.terminate()
        raise ConnectionResetError("lost the database after the write")

    def writes(self) -> list[str]:
        """The guessed writes sent (the questions after a loss are not writes)."""
        return [s for s in self.statements if _is_guessed_write(s)]


class _LostWithTheDatabase(_LostAfterWrite):
    """And the database unreachable after: the store cannot be asked what was stored."""

    gone = False

    async def guessed(self, conn: Any, query: str, args: tuple[Any, ...]) -> Any:
        try:
            return await super().guessed(conn, query, args)
        finally:
            self.gone = True

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        if self.gone:
            raise ConnectionRefusedError("the database is unreachable")
        async with super().acquire() as conn:
            yield conn


@pytest.mark.parametrize("askable", [True, False])
async def test_a_guessed_write_is_one_statement_and_never_run_twice(
    app: FastAPI, settings: BranchlineSettings, askable: bool
) -> None:
    """One statement, no BEGIN, no COMMIT; a write whose answer is lost (it may have
    committed) is not run again: answered as what the store holds, asked on a fresh
    connection (#12: it committed, so accepted at its stored position), or as of unknown
    outcome when the store cannot be asked (before #12: the lost connection's error either
    way, "nothing was stored")."""
    ctx: IntakeContext = app.state.intake
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    lost = _LostAfterWrite(pool) if askable else _LostWithTheDatabase(pool)
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
    assert len(lost.writes()) == 1, lost.statements
    assert "BEGIN" not in lost.writes()[0]
    assert "COMMIT" not in lost.writes()[0]
    async with connected(settings) as conn:
        [row] = await stored(conn, f"client-C-L{run}")
    assert row["stream_version"] == 1
    if not askable:
        assert isinstance(results[0], CommitOutcomeUnknown), results
        return
    assert isinstance(results[0], list), results
    [answer] = results[0]
    assert isinstance(answer, Accepted)
    assert (answer.position.event_id, answer.position.global_position) == (
        row["event_id"],
        row["global_position"],
    )


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
    # At most one statement stands; the other group's, if tried, fails whole. Both may run
    # the ordinary way: a decider remembers a client from the other group's decision (#12,
    # the state after a decided event), so the second group is tried at version 1, cannot
    # stand (D-09 to record), and may take the streams' locks before the first group's
    # statement, which then fails on them. A statement that fails on a stream names it, and
    # the group's other callers are guessed again once (Round 26): each of them registers a
    # shared client too, so that guess fails as well.
    assert guesses("written") - written in (0, 1)
    assert (guesses("written") - written) + (guesses("wrong") - wrong) in (1, 2, 3, 4)
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
    """Several callers' one statement whose answer is lost (it committed): each caller is
    answered by what the store holds (#12; before, the error, "nothing was stored"): accepted,
    at its stored position; one statement, no BEGIN/COMMIT, nothing run again, every event
    stored once."""
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
    assert len(lost.writes()) == 1, lost.statements
    assert "BEGIN" not in lost.writes()[0]
    assert "COMMIT" not in lost.writes()[0]
    answered = [a for r in results if isinstance(r, list) for a in r]
    assert len(answered) == 3, results
    async with connected(settings) as conn:
        rows = [r for x in "ABC" for r in await stored(conn, f"client-C-L{x}{run}")]
    assert [r["stream_version"] for r in rows] == [1, 1, 1]
    assert sorted(
        (a.position.event_id, a.position.global_position)
        for a in answered
        if isinstance(a, Accepted)
    ) == sorted((r["event_id"], r["global_position"]) for r in rows)


# Clients the decider remembers: their next events in the one statement, checked there.


def consent(client_id: str, expected_version: int | None = None) -> SubmittedEvent:
    return registration(client_id).model_copy(
        update={
            "type": "client.consent_granted",
            "data": {"purposes": ["service"]},
            "expected_version": expected_version,
        }
    )


def restarted(app: FastAPI, settings: BranchlineSettings) -> IntakeContext:
    """Another process's view: a decider and a store that remember nothing."""
    ctx: IntakeContext = app.state.intake
    decider = build_decider(settings)
    return dataclasses.replace(
        ctx, decider=decider, store=TailLoadingStore(app.state.stream_lister, decider)
    )


async def test_a_remembered_client_is_written_by_one_statement_as_the_ordinary_way_writes_it(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    ctx: IntakeContext = app.state.intake
    guessing = GroupCommitter(ctx, writers=1)
    plain = ordinary(ctx, writers=1)
    run = uuid.uuid4().hex[:6]
    (registered,) = await guessing.submit([registration(f"C-RG{run}")], submitted_by=BRANCH)
    (other,) = await plain.submit([registration(f"C-RP{run}")], submitted_by=BRANCH)
    assert isinstance(registered, Accepted)
    assert isinstance(other, Accepted)
    written, wrong = guesses("written"), guesses("wrong")
    one, two, new = await guessing.submit(
        [
            consent(f"C-RG{run}", expected_version=1),
            consent(f"C-RG{run}"),
            registration(f"C-RN{run}"),  # a new client beside it: one statement for both
        ],
        submitted_by=BRANCH,
    )
    assert isinstance(new, Accepted)
    assert new.position.stream_version == 1
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong)
    three, four = await plain.submit(
        [consent(f"C-RP{run}", expected_version=1), consent(f"C-RP{run}")], submitted_by=BRANCH
    )
    # A version conflict against the remembered version is answered as the ordinary way does.
    (late,) = await guessing.submit(
        [consent(f"C-RG{run}", expected_version=2)], submitted_by=BRANCH
    )
    (late_plain,) = await plain.submit(
        [consent(f"C-RP{run}", expected_version=2)], submitted_by=BRANCH
    )
    for a, b in ((one, three), (two, four)):
        assert isinstance(a, Accepted), a
        assert isinstance(b, Accepted), b
        assert a.position.stream_version == b.position.stream_version
    assert isinstance(late, Refused)
    assert isinstance(late_plain, Refused)
    assert (late.reason, late.current_version) == (late_plain.reason, late_plain.current_version)
    assert late.current_version == 3
    async with connected(settings) as conn:
        guessed = await stored(conn, f"client-C-RG{run}")
        usual = await stored(conn, f"client-C-RP{run}")
    same = ("stream_version", "type", "hashed", "envelope", "topic", "stream_at")
    assert [{k: r[k] for k in same} for r in guessed] == [{k: r[k] for k in same} for r in usual]
    assert [r["event_id"] for r in guessed[1:]] == [
        one.position.event_id,  # type: ignore[union-attr]
        two.position.event_id,  # type: ignore[union-attr]
    ]
    assert guessed[1]["tx"] == guessed[2]["tx"] != guessed[0]["tx"]
    async with connected(settings) as conn:
        (created,) = await stored(conn, f"client-C-RN{run}")
    assert (created["tx"], created["stream_at"]) == (guessed[1]["tx"], 1)
    assert all(r["stream_at"] == 3 for r in guessed)


async def test_a_stale_remembered_version_runs_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Another process wrote the client after this one remembered it: the statement fails
    whole and the ordinary way answers, from what is stored."""
    ctx: IntakeContext = app.state.intake
    guessing = GroupCommitter(ctx, writers=1)
    run = uuid.uuid4().hex[:6]
    client = f"C-RS{run}"
    (first,) = await guessing.submit([registration(client)], submitted_by=BRANCH)
    assert isinstance(first, Accepted)
    written = guesses("written")
    (remembered,) = await guessing.submit([consent(client)], submitted_by=BRANCH)
    assert isinstance(remembered, Accepted)
    assert guesses("written") == written + 1  # remembered at 1: the one statement
    (elsewhere,) = await ordinary(restarted(app, settings)).submit(
        [consent(client)], submitted_by=BRANCH
    )
    assert isinstance(elsewhere, Accepted)
    assert elsewhere.position.stream_version == 3
    written, wrong = guesses("written"), guesses("wrong")
    (stale,) = await guessing.submit([consent(client)], submitted_by=BRANCH)
    assert (guesses("written"), guesses("wrong")) == (written, wrong + 1)
    assert isinstance(stale, Accepted)
    assert stale.position.stream_version == 4
    # Again stale (the other process writes 5); the conflict is answered at the stored 5.
    await ordinary(restarted(app, settings)).submit([consent(client)], submitted_by=BRANCH)
    (conflict,) = await guessing.submit([consent(client, expected_version=4)], submitted_by=BRANCH)
    assert isinstance(conflict, Refused)
    assert (conflict.reason, conflict.current_version) == (Refusal.VERSION_CONFLICT, 5)
    async with connected(settings) as conn:
        rows = await stored(conn, f"client-{client}")
    assert [(r["stream_version"], r["stream_at"]) for r in rows] == [(v, 5) for v in range(1, 6)]


async def test_a_remembered_event_that_was_never_stored_runs_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """The decider remembers a decision whose write did not stand (rolled back): the stream
    is not at the remembered version, the statement fails, nothing is written off it."""
    ctx: IntakeContext = app.state.intake
    guessing = GroupCommitter(ctx, writers=1)
    run = uuid.uuid4().hex[:6]
    client = f"C-RN{run}"
    (first,) = await guessing.submit([registration(client)], submitted_by=BRANCH)
    assert isinstance(first, Accepted)
    async with connected(settings) as conn:
        (row,) = await conn.fetch(
            "SELECT envelope FROM es_events WHERE stream_id = $1", f"client-{client}"
        )
    stored_first = RecordedEvent.model_validate_json(row["envelope"])
    never = stored_first.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "stream_version": 2,
            "type": "client.consent_granted",
            "data": {"purposes": ["service"]},
        }
    )
    ctx.decider.state_of([stored_first, never])  # type: ignore[attr-defined]
    assert ctx.decider.remembered(f"client-{client}")[0] == 2  # type: ignore[attr-defined]
    wrong = guesses("wrong")
    (answer,) = await guessing.submit([consent(client)], submitted_by=BRANCH)
    assert guesses("wrong") == wrong + 1
    assert isinstance(answer, Accepted)
    assert answer.position.stream_version == 2
    async with connected(settings) as conn:
        rows = await stored(conn, f"client-{client}")
    assert [(r["stream_version"], r["stream_at"]) for r in rows] == [(1, 2), (2, 2)]


async def test_a_remembered_stream_ending_elsewhere_fails_the_statement(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """The store's check: a stream at the remembered version but not ending with the
    remembered event fails the statement (GuessWrong), and nothing of it is written."""
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
    try:
        store = PostgresEventStore(pool)
        run = uuid.uuid4().hex[:6]
        stream = f"client-C-RE{run}"
        async with store.guessing_unit_of_work() as unit:
            assert await unit.lock_streams([stream]) == {stream: 0}
            first = _recorded(stream, 1, f"C-RE{run}")
            unit.stage(first, topic="t", submission_hash=None)
            await unit.commit()
        # Remembered at 1 ending with another event; remembered at 2 (never written); right.
        for version, last_id in ((1, uuid.uuid4()), (2, first.event_id)):
            with pytest.raises(GuessWrong) as failed:
                await _write_on(store, stream, version, last_id)
            # The stale guess's own SQLSTATE (event store migration 010), nothing else's.
            assert isinstance(failed.value.__cause__, asyncpg.PostgresError)
            assert failed.value.__cause__.sqlstate == STALE_STREAM_GUESS
            # Which names no stream; the store's question after it does (Round 27).
            assert failed.value.taken_streams == {stream}
            assert not failed.value.taken_ids
        async with store.guessing_unit_of_work() as unit:
            unit.remember({stream: (1, first.event_id)})
            assert await unit.lock_streams([stream]) == {stream: 1}
            unit.stage(_recorded(stream, 2, f"C-RE{run}"), topic="t", submission_hash=None)
            (position,) = await unit.commit()
            assert position.stream_version == 2
        async with connected(settings) as conn:
            assert [r["stream_version"] for r in await stored(conn, stream)] == [1, 2]
    finally:
        await pool.close()


class _Unreadable(_GuessedWritePool):
    """The store's pool, sending its guessed writes with the first envelope's event id made a
    text that is no uuid: the server refuses the statement with invalid_text_representation,
    an error that has nothing to do with the guess."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        super().__init__(pool)
        self.refused = 0

    async def guessed(self, conn: Any, query: str, args: tuple[Any, ...]) -> Any:
        envelopes = list(args[0])
        envelopes[0] = json.dumps({**json.loads(envelopes[0]), "event_id": "not-a-uuid"})
        try:
            return await conn.fetch(query, envelopes, *args[1:])
        except asyncpg.InvalidTextRepresentationError:
            self.refused += 1
            raise


@pytest.mark.parametrize("remembered", [True, False], ids=["remembered", "new"])
async def test_an_unrelated_invalid_text_is_not_taken_for_a_stale_guess(
    app: FastAPI, settings: BranchlineSettings, remembered: bool
) -> None:
    """A guessed write the server refuses for another reason than the guess (here a value it
    cannot read: invalid_text_representation, the SQLSTATE the stale guess once borrowed) is
    raised as it is, not as GuessWrong; nothing is written and it is not taken as sent."""
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
    try:
        run = uuid.uuid4().hex[:6]
        stream = f"client-C-RU{run}"
        version, last_id = 0, uuid.uuid4()
        if remembered:
            async with PostgresEventStore(pool).guessing_unit_of_work() as unit:
                await unit.lock_streams([stream])
                first = _recorded(stream, 1, f"C-RU{run}")
                unit.stage(first, topic="t", submission_hash=None)
                await unit.commit()
            version, last_id = 1, first.event_id
        unreadable = _Unreadable(pool)
        store = PostgresEventStore(unreadable)  # type: ignore[arg-type]
        write = (
            _write_on(store, stream, version, last_id) if remembered else _write_new(store, stream)
        )
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            await write
        assert unreadable.refused == 1
        async with connected(settings) as conn:
            # The remembered stream's first event only; the new stream not created.
            assert [r["stream_version"] for r in await stored(conn, stream)] == (
                [1] if remembered else []
            )
    finally:
        await pool.close()


@pytest.mark.parametrize("callers", [1, 2])
async def test_a_guessed_write_refused_for_another_reason_runs_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings, callers: int
) -> None:
    """A group whose one statement the server refuses for another reason than the guess
    (nothing written) runs the ordinary way, as before the stale guess had its own SQLSTATE:
    one caller or several, each accepted once."""
    ctx: IntakeContext = app.state.intake
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    unreadable = _Unreadable(pool)
    store = TailLoadingStore(PostgresEventStore(unreadable), ctx.decider)  # type: ignore[arg-type]
    committer = GroupCommitter(dataclasses.replace(ctx, store=store), writers=1, window_s=0.05)
    run = uuid.uuid4().hex[:6]
    clients = [f"C-UO{x}{run}" for x in "AB"[:callers]]
    wrong = guesses("wrong")
    try:
        results = await together(
            committer,
            *(([registration(c)], by) for c, by in zip(clients, (BRANCH, OTHER), strict=False)),
        )
    finally:
        await pool.close()
    assert unreadable.refused == 1
    assert guesses("wrong") == wrong + 1
    assert all(isinstance(r[0], Accepted) for r in results), results  # type: ignore[index]
    async with connected(settings) as conn:
        for client in clients:
            assert [r["stream_version"] for r in await stored(conn, f"client-{client}")] == [1]


async def _write_on(
    store: PostgresEventStore, stream: str, version: int, last_id: uuid.UUID
) -> None:
    """One event written on ``stream`` as remembered at ``version`` ending with ``last_id``."""
    async with store.guessing_unit_of_work() as unit:
        unit.remember({stream: (version, last_id)})
        assert await unit.lock_streams([stream]) == {stream: version}
        unit.stage(
            _recorded(stream, version + 1, stream.removeprefix("client-")),
            topic="t",
            submission_hash=None,
        )
        try:
            await unit.commit()
        finally:
            assert not unit.sent


async def _write_new(store: PostgresEventStore, stream: str) -> None:
    """One event written on ``stream`` taken for new."""
    async with store.guessing_unit_of_work() as unit:
        assert await unit.lock_streams([stream]) == {stream: 0}
        unit.stage(
            _recorded(stream, 1, stream.removeprefix("client-")), topic="t", submission_hash=None
        )
        try:
            await unit.commit()
        finally:
            assert not unit.sent


def _recorded(stream: str, version: int, client_id: str) -> RecordedEvent:
    return RecordedEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "type": "client.consent_granted",
            "schema_version": 1,
            "occurred_at": datetime.now(UTC),
            "recorded_at": datetime.now(UTC),
            "source": "intake",
            "actor": {"id": "staff-17", "role": "teller"},
            "client_id": client_id,
            "branch_id": "BR-001",
            "channel": "walk_in",
            "stream_id": stream,
            "stream_version": version,
            "data": {"purposes": ["service"]},
        }
    )


async def test_concurrent_groups_on_the_same_remembered_client(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Groups written at once (two committers, two writers each, as two intake processes
    sharing a decider's memory or not) on the same existing clients: every event accepted
    once, the versions without gap or repeat, some groups in the one statement."""
    ctx: IntakeContext = app.state.intake
    other = restarted(app, settings)
    committers = [GroupCommitter(ctx), GroupCommitter(ctx), GroupCommitter(other)]
    run = uuid.uuid4().hex[:6]
    clients = [f"C-RC{run}-{i}" for i in range(3)]
    for client in clients:
        (registered,) = await committers[0].submit([registration(client)], submitted_by=BRANCH)
        assert isinstance(registered, Accepted)
        written = guesses("written")
        (remembered,) = await committers[0].submit([consent(client)], submitted_by=BRANCH)
        assert isinstance(remembered, Accepted)
        assert guesses("written") == written + 1  # remembered: the one statement
        # The other process writes each client too: both remember it (this one's memory
        # stale until it reads it again).
        (granted,) = await ordinary(other).submit([consent(client)], submitted_by=BRANCH)
        assert isinstance(granted, Accepted)
    tried = guesses("written") + guesses("wrong")
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(
                committers[i % 3].submit([consent(clients[(i // 3) % 3])], submitted_by=BRANCH)
                for i in range(30)
            )
        ),
        timeout=60,
    )
    assert all(isinstance(a[0], Accepted) for a in answers), answers
    # Every client remembered: groups are tried in one statement (written, or run the
    # ordinary way when a remembered version was stale or still being written by another
    # group: the statement's check reads the stream as of its start).
    assert guesses("written") + guesses("wrong") > tried
    async with connected(settings) as conn:
        for k, client in enumerate(clients):
            last = 3 + sum(1 for i in range(30) if (i // 3) % 3 == k)
            rows = await stored(conn, f"client-{client}")
            assert [r["stream_version"] for r in rows] == list(range(1, last + 1))
            assert {r["stream_at"] for r in rows} == {last}
    versions = sorted(
        (a[0].position.stream_id, a[0].position.stream_version)  # type: ignore[union-attr]
        for a in answers
    )
    assert len(set(versions)) == 30


async def test_a_lost_answer_to_a_remembered_clients_write_is_not_run_again(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client = f"C-RL{run}"
    (first,) = await GroupCommitter(ctx, writers=1).submit(
        [registration(client)], submitted_by=BRANCH
    )
    assert isinstance(first, Accepted)
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    lost = _LostAfterWrite(pool)
    store = TailLoadingStore(PostgresEventStore(lost), ctx.decider)  # type: ignore[arg-type]
    committer = GroupCommitter(dataclasses.replace(ctx, store=store), writers=1)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                committer.submit([consent(client)], submitted_by=BRANCH),
                return_exceptions=True,
            ),
            timeout=30,
        )
    finally:
        await pool.close()
    assert len(lost.writes()) == 1, lost.statements
    assert "BEGIN" not in lost.writes()[0]
    async with connected(settings) as conn:
        rows = await stored(conn, f"client-{client}")
    assert [r["stream_version"] for r in rows] == [1, 2]
    # Answered by what the store holds (#12; before, the lost connection's error).
    assert isinstance(results[0], list), results
    [answer] = results[0]
    assert isinstance(answer, Accepted)
    assert answer.position.event_id == rows[1]["event_id"]


# A mixed group: the callers that qualify in the one statement, the others the ordinary way.


async def test_a_mixed_groups_qualifying_callers_take_the_one_statement(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Four callers in one group: two register the same client (a stream two callers decide
    on), one registers a client of its own and one sends its own event id (guessable since
    Round 25: the write checks the id). Those two are written by the one statement, first;
    the rest the ordinary way, each answered as it would be."""
    ctx: IntakeContext = app.state.intake
    committer = GroupCommitter(ctx, writers=1, window_s=0.1)
    run = uuid.uuid4().hex[:6]
    sent_id = uuid.uuid4()
    written, wrong = guesses("written"), guesses("wrong")
    fourth = Actor(id="branch-10", role="branch_system")
    with_id, shared_one, shared_two, own = await together(
        committer,
        ([registration(f"C-MI{run}", event_id=sent_id)], BRANCH),
        ([registration(f"C-MS{run}")], OTHER),
        ([registration(f"C-MS{run}")], THIRD),
        ([registration(f"C-MO{run}"), registration(f"C-MP{run}")], fourth),
    )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong)
    assert isinstance(with_id, list)
    assert isinstance(with_id[0], Accepted)
    assert with_id[0].position.event_id == sent_id
    assert isinstance(shared_one, list)
    assert isinstance(shared_two, list)
    same = [shared_one[0], shared_two[0]]
    assert sum(isinstance(o, Accepted) for o in same) == 1, same
    assert all(
        isinstance(o, Refused) and o.rule == "D-09" for o in same if not isinstance(o, Accepted)
    )
    assert isinstance(own, list)
    assert all(isinstance(o, Accepted) for o in own), own
    async with connected(settings) as conn:
        mine = [(await stored(conn, f"client-C-M{x}{run}"))[0] for x in "OPI"]
        others = [(await stored(conn, f"client-C-M{x}{run}"))[0] for x in "S"]
        refusals = await stored(conn, f"refusals-C-MS{run}")
    assert {r["tx"] for r in mine} == {mine[0]["tx"]}  # one statement, its own transaction
    assert {r["tx"] for r in others} == {others[0]["tx"]} != {mine[0]["tx"]}
    assert max(r["global_position"] for r in mine) < min(r["global_position"] for r in others)
    assert [(r["stream_version"], r["stream_at"]) for r in refusals] == [(1, 1)]


async def test_a_groups_statement_that_names_a_caller_guesses_the_others_again(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """The callers' statement fails on a client that exists, unknown to a restarted process
    (a unique violation naming its stream): nothing written. The caller that sent it runs
    the ordinary way (D-09 for the existing client, its other client accepted); the other is
    guessed again without it and written by that statement, first (Round 26). Until then
    the whole group ran the ordinary way, in one transaction."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    (first,) = await ordinary(ctx).submit([registration(f"C-MX{run}")], submitted_by=BRANCH)
    assert isinstance(first, Accepted)
    committer = GroupCommitter(restarted(app, settings), writers=1, window_s=0.1)
    written, wrong = guesses("written"), guesses("wrong")
    again, with_id = await together(
        committer,
        ([registration(f"C-MX{run}"), registration(f"C-MY{run}")], OTHER),
        ([registration(f"C-MZ{run}", event_id=uuid.uuid4())], BRANCH),
    )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert isinstance(again, list)
    assert isinstance(again[0], Refused)
    assert again[0].rule == "D-09"
    assert isinstance(again[1], Accepted)
    assert isinstance(with_id, list)
    assert isinstance(with_id[0], Accepted)
    async with connected(settings) as conn:
        rows = [(await stored(conn, f"client-C-M{x}{run}"))[0] for x in "YZ"]
        refusals = await stored(conn, f"refusals-C-MX{run}")
    assert rows[0]["tx"] != rows[1]["tx"]  # guessed again alone, then the ordinary way
    assert rows[1]["global_position"] < rows[0]["global_position"]
    assert [(r["stream_version"], r["stream_at"]) for r in refusals] == [(1, 1)]


class _CountingClock:
    """The context's clock, its reads counted."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self.reads = 0

    def now(self) -> datetime:
        self.reads += 1
        return self._clock.now()  # type: ignore[no-any-return]


async def test_a_guessed_group_of_several_callers_is_decided_in_one_pass(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Three branch systems' new clients in one guessed group are decided by one pass over
    all their items (#12: not one ``submit_events`` per caller, the per-caller work that made
    16 tokens cost more per event than one): one clock read for the group. Each caller's
    own token still decides who speaks: the caller whose token is for another branch is
    refused in its place, the others accepted, each event recording its own caller."""
    ctx: IntakeContext = app.state.intake
    clock = _CountingClock(ctx.clock)
    run = uuid.uuid4().hex[:6]
    written = guesses("written")
    committer = GroupCommitter(dataclasses.replace(ctx, clock=clock), writers=1, window_s=0.05)
    submitters = {
        by.id: Submitter(sub=by.id, roles=("branch_system",), branch_id=branch)
        for by, branch in ((BRANCH, "BR-001"), (OTHER, "BR-002"), (THIRD, "BR-001"))
    }
    calls = (
        ([registration(f"C-OA{run}"), registration(f"C-OB{run}")], BRANCH),
        ([registration(f"C-OC{run}")], OTHER),
        ([registration(f"C-OD{run}")], THIRD),
    )
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(
                committer.submit(items, submitted_by=by, submitter=submitters[by.id])
                for items, by in calls
            )
        ),
        timeout=60,
    )
    assert guesses("written") == written + 1  # one group, one statement
    assert clock.reads == 1  # one pass for the three callers
    first, (refused,), third = answers
    assert all(isinstance(o, Accepted) for o in [*first, *third]), answers
    assert isinstance(refused, Refused)
    assert refused.reason is Refusal.ACTOR_NOT_ALLOWED, refused
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-O{c}{run}") for c in "ABCD"}
    assert rows["C"] == []
    for c, by in (("A", BRANCH), ("B", BRANCH), ("D", THIRD)):
        (row,) = rows[c]
        envelope = json.loads(row["envelope"])
        assert envelope["submitted_by"]["sub"] == by.id, envelope
