"""Group commit of intake (docs/performance.md): concurrent submissions share one
transaction, each is answered after its own commit with its own outcome, a refusal or a
failing caller never takes the others down, and a failed commit stores nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.application.history_tail import TailLoadingStore
from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import IntakeContext, submit_events
from branchline_shared.events.envelope import Actor, SubmittedEvent
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.support.events import registration_body

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

BRANCH = Actor(id="branch-7", role="branch_system")
_NOW = datetime.now(UTC)  # recent (D-05b), and the same for a resent event


def registration(client_id: str, event_id: uuid.UUID | None = None) -> SubmittedEvent:
    return SubmittedEvent.model_validate(registration_body(client_id, event_id, _NOW))


async def transactions_of(settings: BranchlineSettings, client_ids: list[str]) -> int:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(DISTINCT tx_id) FROM es_events WHERE client_id = ANY($1::text[])",
                client_ids,
            )
        )
    finally:
        await conn.close()


async def stored_ids(settings: BranchlineSettings) -> set[uuid.UUID]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        return {r["event_id"] for r in await conn.fetch("SELECT event_id FROM es_events")}
    finally:
        await conn.close()


async def test_concurrent_requests_share_transactions_and_each_gets_its_own_place(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    committer: GroupCommitter = app.state.group_commit
    clients = [f"C-G{i}" for i in range(60)]
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(committer.submit([registration(c)], submitted_by=BRANCH) for c in clients)
        ),
        timeout=60,
    )
    positions = []
    for client_id, (outcome,) in zip(clients, answers, strict=True):
        assert isinstance(outcome, Accepted), outcome
        assert outcome.position.stream_id == f"client-{client_id}"
        assert outcome.position.stream_version == 1
        positions.append(outcome.position.global_position)
    assert len(set(positions)) == len(clients)
    # Sixty requests, far fewer commits: they were grouped.
    assert await transactions_of(settings, clients) < len(clients) // 2


async def test_an_answer_comes_after_its_commit(app: FastAPI) -> None:
    committer: GroupCommitter = app.state.group_commit
    ctx: IntakeContext = app.state.intake

    async def submit_then_read(client_id: str) -> None:
        (outcome,) = await committer.submit([registration(client_id)], submitted_by=BRANCH)
        assert isinstance(outcome, Accepted)
        # Read on another connection the moment the answer arrives: it is durable already.
        stored = await ctx.store.read_stream(f"client-{client_id}")
        assert [s.position.event_id for s in stored] == [outcome.position.event_id]

    await asyncio.wait_for(
        asyncio.gather(*(submit_then_read(f"C-R{i}") for i in range(20))), timeout=60
    )


async def test_a_refused_item_never_aborts_the_others_in_its_group(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    committer: GroupCommitter = app.state.group_commit
    requests = [registration(f"C-F{i}") for i in range(10)]
    twice = registration("C-F3")  # registered again in the same group: D-09 refuses it
    stale = registration("C-F99").model_copy(update={"expected_version": 4})
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(
                committer.submit([item], submitted_by=BRANCH)
                for item in [*requests[:5], twice, stale, *requests[5:]]
            )
        ),
        timeout=60,
    )
    outcomes = [a[0] for a in answers]
    refused_twice, refused_stale = outcomes[5], outcomes[6]
    assert isinstance(refused_twice, Refused)
    assert refused_twice.rule == "D-09"
    assert isinstance(refused_stale, Refused)
    assert refused_stale.reason is Refusal.VERSION_CONFLICT
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    assert len(accepted) == 10
    stored = await stored_ids(settings)
    assert {o.position.event_id for o in accepted} <= stored
    assert twice.event_id is None or twice.event_id not in stored


async def test_the_same_event_id_sent_twice_at_once_is_stored_once(app: FastAPI) -> None:
    committer: GroupCommitter = app.state.group_commit
    event_id = uuid.uuid4()
    first, second = await asyncio.wait_for(
        asyncio.gather(
            committer.submit([registration("C-D1", event_id)], submitted_by=BRANCH),
            committer.submit(
                [registration("C-D1", event_id)], submitted_by=Actor(id="other", role="rm")
            ),
        ),
        timeout=30,
    )
    assert isinstance(first[0], Accepted)
    assert isinstance(second[0], Accepted)
    assert first[0].position == second[0].position
    assert [first[0].duplicate, second[0].duplicate].count(True) == 1


async def test_a_failing_caller_fails_alone(app: FastAPI, settings: BranchlineSettings) -> None:
    ctx: IntakeContext = app.state.intake
    broken = Actor(id="broken", role="branch_system")

    async def submit(
        ctx: IntakeContext, items: list[SubmittedEvent], **caller: Any
    ) -> list[Outcome]:
        outcomes = await submit_events(ctx, items, **caller)  # writes in its savepoint ...
        if caller["submitted_by"] == broken:
            raise RuntimeError("a bug in this caller's path")  # ... which is rolled back
        return outcomes

    committer = GroupCommitter(ctx, submit=submit, writers=1)
    doomed = registration("C-B0")
    results = await asyncio.wait_for(
        asyncio.gather(
            committer.submit([registration("C-B1")], submitted_by=BRANCH),
            committer.submit([doomed], submitted_by=broken),
            committer.submit([registration("C-B2")], submitted_by=BRANCH),
            return_exceptions=True,
        ),
        timeout=30,
    )
    assert isinstance(results[1], RuntimeError)
    ok = [r[0] for r in (results[0], results[2]) if isinstance(r, list)]
    assert all(isinstance(o, Accepted) for o in ok)
    assert len(ok) == 2
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        stored = {r["client_id"] for r in await conn.fetch("SELECT client_id FROM es_events")}
    finally:
        await conn.close()
    assert {"C-B1", "C-B2"} <= stored
    assert "C-B0" not in stored


async def test_a_new_client_written_earlier_in_the_group_is_read_by_the_next_caller(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """A new client's history is known empty only while the group's callers have not written
    it (#12): a second registration of the same new client by another caller of the same
    group is refused (D-09), and a caller rolled back leaves it new for the next."""
    ctx: IntakeContext = app.state.intake
    broken = Actor(id="broken-2", role="branch_system")
    other = Actor(id="branch-8", role="branch_system")

    async def submit(
        ctx: IntakeContext, items: list[SubmittedEvent], **caller: Any
    ) -> list[Outcome]:
        outcomes = await submit_events(ctx, items, **caller)
        if caller["submitted_by"] == broken:
            raise RuntimeError("rolled back after its write")
        return outcomes

    committer = GroupCommitter(ctx, submit=submit, writers=1, window_s=0.2)
    run = uuid.uuid4().hex[:6]
    twice, undone = f"C-T{run}", f"C-U{run}"
    results = await asyncio.wait_for(
        asyncio.gather(
            committer.submit([registration(twice)], submitted_by=BRANCH),
            committer.submit([registration(twice)], submitted_by=other),
            committer.submit([registration(undone)], submitted_by=broken),
            committer.submit([registration(undone)], submitted_by=other),
            return_exceptions=True,
        ),
        timeout=30,
    )
    first, second, failed, after = results
    assert isinstance(first, list), first
    assert isinstance(first[0], Accepted), first
    assert isinstance(second, list), second
    assert isinstance(second[0], Refused), second
    assert isinstance(failed, RuntimeError)
    assert isinstance(after, list), after
    assert isinstance(after[0], Accepted), after
    assert after[0].position.stream_version == 1
    assert await transactions_of(settings, [twice, undone]) == 1  # one group


class _CommitFails(PostgresEventStore):
    """The commit of every group fails (as when the database goes away at that moment)."""

    @contextlib.asynccontextmanager
    async def shared_transaction(self) -> AsyncIterator[Any]:
        async with super().shared_transaction() as shared:
            yield shared
            raise ConnectionResetError("lost the database at commit")


async def test_a_failed_commit_fails_the_whole_group_and_stores_nothing(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    ctx: IntakeContext = app.state.intake
    inner = getattr(ctx.store, "_store", ctx.store)  # under the history-tail wrapper
    store = _CommitFails(inner._pool)
    # The ordinary way's COMMIT; a guessed write's lost answer: test_group_commit_guessed.py.
    committer = GroupCommitter(
        IntakeContext(**{**ctx.__dict__, "store": store}), writers=1, guess_new_streams=False
    )
    results = await asyncio.wait_for(
        asyncio.gather(
            *(committer.submit([registration(f"C-X{i}")], submitted_by=BRANCH) for i in range(5)),
            return_exceptions=True,
        ),
        timeout=30,
    )
    assert all(isinstance(r, ConnectionResetError) for r in results), results
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        assert not await conn.fetchval("SELECT count(*) FROM es_events WHERE client_id LIKE 'C-X%'")
    finally:
        await conn.close()


class _CountingPool:
    """The store's pool, counting the statements sent on the connections it lends."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self.statements: list[str] = []

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            conn.add_query_logger(self._log)
            try:
                yield conn
            finally:
                conn.remove_query_logger(self._log)

    def _log(self, record: Any) -> None:
        self.statements.append(record.query)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


@pytest.mark.parametrize("with_ids", [True, False], ids=["event ids sent", "no event ids"])
async def test_a_caller_costs_few_round_trips_within_a_group(
    app: FastAPI, settings: BranchlineSettings, with_ids: bool
) -> None:
    """#12: within a group, a caller's part is its savepoint (which also releases the previous
    caller's), the history tail (none for a new client) and one statement for its events,
    outbox rows and stream versions; the stream locks and the event ids are looked up once
    for the group. Measured
    as the statements of a group of one caller and of a group of eight distinct callers.
    Items sent without an event id cost no look-up at all (their new ids cannot be stored)."""
    ctx: IntakeContext = app.state.intake
    # A pool of its own with one connection, warmed below: no other statement is counted.
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    counting = _CountingPool(pool)
    store = TailLoadingStore(PostgresEventStore(counting), ctx.decider)  # type: ignore[arg-type]
    # One writer that waits a moment before it takes a group: every request below is in it.
    committer = GroupCommitter(
        IntakeContext(**{**ctx.__dict__, "store": store}),
        writers=1,
        window_s=0.2,
        guess_new_streams=False,  # the ordinary way: test_group_commit_guessed.py the other
    )

    async def group(clients: list[str]) -> int:
        counting.statements.clear()
        answers = await asyncio.gather(
            *(
                committer.submit(
                    [registration(c, uuid.uuid4() if with_ids else None)],
                    submitted_by=Actor(id=f"branch-{c}", role="branch_system"),
                )
                for c in clients
            )
        )
        assert all(isinstance(a[0], Accepted) for a in answers), answers
        assert sum(q.startswith("BEGIN") for q in counting.statements) == 1  # one group
        return len(counting.statements)

    try:
        run = uuid.uuid4().hex[:6]
        await asyncio.wait_for(group([f"C-W{run}"]), timeout=30)  # asyncpg's type introspection
        one = await asyncio.wait_for(group([f"C-S{run}"]), timeout=30)
        alone = list(counting.statements)
        eight = await asyncio.wait_for(group([f"C-S{run}-{i}" for i in range(8)]), timeout=30)
    finally:
        await pool.close()
    # The group: the locks, sent with its BEGIN (one statement: the streams are new, created
    # by it), the event ids (when sent), commit. Each caller: two, its savepoint and its
    # write (before #12: eleven, and fifteen for a group of one); a new client's history is
    # not read, the group holds its stream at version 0. A group's only caller takes no
    # savepoint. Event ids sent: since Round 30 one more, the group's claim of them before
    # its commit (a refusal and an acceptance under one id serialised, D-05, migration 011).
    assert one <= (5 if with_ids else 3), alone
    assert alone[0].startswith("BEGIN;"), alone
    assert not [q for q in alone if "SAVEPOINT" in q], alone
    assert (eight - one - 1) / 7 <= 2, counting.statements
    assert not [q for q in counting.statements if "FROM es_events WHERE stream_id" in q]


async def test_a_lost_race_is_answered_alike_with_or_without_a_savepoint(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """#12: a group's only caller runs without a savepoint; when its write loses a race for
    an event id (another writer stored it, for another client, after the group looked), the
    group is rolled back and runs again with the savepoint, and the caller gets the answer a
    caller among others gets (whose savepoint lets it retry at once); nothing stored twice."""
    alone, calls_alone = await _lost_race(app, settings, others=0)
    among, calls_among = await _lost_race(app, settings, others=1)
    assert isinstance(alone, Refused), alone
    assert (alone.reason, alone.rule) == (among.reason, among.rule)  # type: ignore[union-attr]
    assert calls_alone == 2  # run again, with the savepoint
    assert calls_among == 1


async def _lost_race(
    app: FastAPI, settings: BranchlineSettings, *, others: int
) -> tuple[Outcome, int]:
    ctx: IntakeContext = app.state.intake
    taken = uuid.uuid4()
    run = uuid.uuid4().hex[:6]
    calls: list[str] = []

    async def submit(
        ctx_in_group: IntakeContext, items: list[SubmittedEvent], **caller: Any
    ) -> list[Outcome]:
        if caller["submitted_by"] == BRANCH and not calls:
            # The same event id, stored by another writer after the group's look-up.
            (stored,) = await submit_events(
                ctx, [registration(f"C-M{run}", taken)], submitted_by=BRANCH
            )
            assert isinstance(stored, Accepted)
        calls.append(caller["submitted_by"].id)
        return await submit_events(ctx_in_group, items, **caller)

    committer = GroupCommitter(ctx, submit=submit, writers=1, window_s=0.2)
    other = Actor(id="branch-9", role="branch_system")
    results = await asyncio.wait_for(
        asyncio.gather(
            committer.submit([registration(f"C-L{run}", taken)], submitted_by=BRANCH),
            *(
                committer.submit([registration(f"C-O{run}-{i}")], submitted_by=other)
                for i in range(others)
            ),
        ),
        timeout=30,
    )
    assert all(isinstance(r[0], Accepted) and not r[0].duplicate for r in results[1:])
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM es_events WHERE event_id = $1", taken) == 1
    finally:
        await conn.close()
    return results[0][0], calls.count(BRANCH.id)


async def test_a_failing_caller_alone_is_answered_with_its_error_and_stores_nothing(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """#12: without a savepoint, a group's only caller that fails after its write takes the
    whole transaction back; run again with the savepoint it fails the same way, and is
    answered with its error, as a failing caller among others is."""
    ctx: IntakeContext = app.state.intake
    calls = 0

    async def submit(
        ctx: IntakeContext, items: list[SubmittedEvent], **caller: Any
    ) -> list[Outcome]:
        nonlocal calls
        calls += 1
        await submit_events(ctx, items, **caller)
        raise RuntimeError("a bug after the write")

    committer = GroupCommitter(ctx, submit=submit, writers=1)
    run = uuid.uuid4().hex[:6]
    with pytest.raises(RuntimeError, match="after the write"):
        await asyncio.wait_for(
            committer.submit([registration(f"C-E{run}")], submitted_by=BRANCH), timeout=30
        )
    assert calls == 2
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        assert not await conn.fetchval(
            "SELECT count(*) FROM es_events WHERE client_id = $1", f"C-E{run}"
        )
    finally:
        await conn.close()


async def test_a_request_cancelled_while_its_group_is_written_cancels_nothing_else(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """A request given up (its client gone, its timeout) while its group is written: its
    event is committed with the group all the same, and the others are answered (#12: the
    answer is awaited without a shield; the writer is a task of its own)."""
    committer: GroupCommitter = app.state.group_commit
    clients = [f"C-X{i}" for i in range(12)]
    tasks = [
        asyncio.create_task(committer.submit([registration(c)], submitted_by=BRANCH))
        for c in clients
    ]
    await asyncio.sleep(0)  # every request queued, a writer started
    for task in tasks[::3]:
        task.cancel()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)
    assert all(isinstance(d, asyncio.CancelledError) for d in done[::3])
    kept = [d for i, d in enumerate(done) if i % 3]
    assert all(isinstance(d, list) and isinstance(d[0], Accepted) for d in kept), kept
    ctx: IntakeContext = app.state.intake
    for client_id in clients:  # the cancelled requests' events too
        stored = await ctx.store.read_stream(f"client-{client_id}")
        assert len(stored) == 1, client_id
    # Nothing left waiting: the writers finish once their groups are answered.
    await asyncio.wait_for(committer.aclose(), timeout=30)
