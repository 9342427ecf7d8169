"""Two writers storing the same client-chosen event ids on different streams wait on each
other in ``es_events``' unique index on ``event_id`` (an insert meeting another transaction's
uncommitted id waits for it to end). No stream lock is shared, so the sorted stream pass
(docs/intake.md, "Lock order") cannot order them. Until Round 24 two writers in opposite
orders each held the id they inserted first and waited for the other's: a cycle, broken by
the server after ``deadlock_timeout`` (1 s) by rolling one back (40P01), whose whole
transaction then ran again (Round 23; before it, a 500).

Since Round 24 (#12) every write inserts its events in event id order, and a write of a
transaction that already holds an id above one of its own (a batch's later part, a group's
later caller) does not wait (``lock_timeout``, then ``EventIdsBusy``): no cycle can form. The
writer in order waits once, for the first id they share, and is answered by the idempotency
rules; the one out of order gives way, and the batch, or each caller of the group alone, runs
again writing its ids by one statement, in order.

The other writer is staged step by step on a connection of the test's, by the store's own
statements (two writes: two statements), with a ``deadlock_timeout`` long enough that the
server would always roll back the intake app's transaction if a cycle formed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.application.submit import IntakeContext, submission_hash
from branchline_intake.bootstrap import create_app
from branchline_intake.entrypoints.http import submit_one
from branchline_shared.events.envelope import RecordedEvent, SubmittedEvent
from branchline_shared.eventstore.ports import EventIdsBusy
from branchline_shared.eventstore.postgres import PostgresUnitOfWork
from branchline_shared.http.auth import Principal, Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.events import registration_body
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

_NOW = datetime.now(UTC).replace(microsecond=0)
# Two branch systems: two callers of one group, each in a savepoint of its own.
CALLERS = [
    Principal(subject, frozenset({Role.BRANCH_SYSTEM}), branch_id="BR-001")
    for subject in ("branch-7", "branch-8")
]


def registration(client_id: str, event_id: uuid.UUID) -> dict[str, Any]:
    return registration_body(client_id, event_id, _NOW)


def recorded(item: SubmittedEvent) -> RecordedEvent:
    """The event another intake process records for ``item`` on a new stream."""
    return RecordedEvent.model_validate(
        {
            "event_id": item.event_id,
            "type": item.type,
            "occurred_at": item.occurred_at,
            "recorded_at": _NOW,
            "source": "intake",
            "actor": item.actor,
            "client_id": item.client_id,
            "branch_id": item.branch_id,
            "channel": item.channel,
            "stream_id": f"client-{item.client_id}",
            "stream_version": 1,
            "data": item.data,
        }
    )


@pytest.fixture
async def served(settings: BranchlineSettings) -> AsyncIterator[tuple[FastAPI, str]]:
    """Intake's app served for the test (the shared ``app`` fixture's), and its URL."""
    application = create_app(settings)
    async with serve(application) as url:
        yield application, url


@contextlib.asynccontextmanager
async def other_holding(
    settings: BranchlineSettings,
    ctx: IntakeContext,
    streams: list[str],
    held: tuple[str, uuid.UUID],
) -> AsyncIterator[tuple[Other, Callable[[], Awaitable[None]]]]:
    """The other writer with its streams taken, holding one registration uncommitted
    (``held``: its client and event id), and a wait until a backend other than the other
    writer's waits for another transaction (intake, on what the other holds)."""
    other = Other(await asyncpg.connect(settings.intake_database_url), ctx)
    watcher = await asyncpg.connect(settings.intake_database_url)

    async def intake_waits() -> None:
        await asyncio.wait_for(others_wait(watcher, other.conn.get_server_pid()), 20)

    try:
        await other.start(streams)
        await other.write(SubmittedEvent.model_validate(registration(*held)))
        yield other, intake_waits
    finally:
        await other.conn.close()
        await watcher.close()


async def others_wait(watcher: asyncpg.Connection[Any], spared: int) -> None:
    """Until a backend of the database other than ``spared`` waits for another transaction
    (an insert meeting an uncommitted id does; bounded by the caller's timeout)."""
    query = (
        "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE NOT l.granted AND l.locktype = 'transactionid' "
        "AND a.datname = current_database() AND l.pid <> $1)"
    )
    while True:
        if await watcher.fetchval(query, spared):
            return
        await asyncio.sleep(0.02)


async def stored(settings: BranchlineSettings, ids: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT e.event_id, e.stream_id, count(o.id) AS outbox FROM es_events e "
            "LEFT JOIN es_outbox o USING (event_id) WHERE e.event_id = ANY($1::uuid[]) "
            "GROUP BY e.event_id, e.stream_id ORDER BY e.stream_id",
            ids,
        )
    finally:
        await conn.close()
    return [(r["event_id"], r["stream_id"], r["outbox"]) for r in rows]


def shape(status: int, body: dict[str, Any]) -> tuple[Any, ...]:
    """An answer as the caller sees it: the status, and where it was stored or why not."""
    if status == 202:
        return (202, body["stream_id"])
    return (status, str(body.get("type", "")).rpartition("/")[2])


def ids_in_order() -> tuple[uuid.UUID, uuid.UUID]:
    """Two fresh ids, the lower first (PostgreSQL orders uuids as Python orders them)."""
    low, high = sorted((uuid.uuid4(), uuid.uuid4()))
    return low, high


def guesses() -> tuple[float, float]:
    """The group commit's guessed statements so far: written, and wrong (nothing written)."""
    counter = "branchline_intake_group_commit_guesses_total"
    return (
        REGISTRY.get_sample_value(counter, {"outcome": "written"}) or 0,
        REGISTRY.get_sample_value(counter, {"outcome": "wrong"}) or 0,
    )


def reruns(path: str) -> tuple[float, float]:
    """The runs again so far after a lock cycle and after an id met out of the id order."""
    label = {"path": path}
    return (
        REGISTRY.get_sample_value("branchline_intake_lock_cycle_reruns_total", label) or 0,
        REGISTRY.get_sample_value("branchline_intake_event_id_order_reruns_total", label) or 0,
    )


class Other:
    """The other writer: the store's own statements on a connection of the test's, in one
    transaction, each write a statement of its own."""

    def __init__(self, conn: asyncpg.Connection[Any], ctx: IntakeContext) -> None:
        self.conn = conn
        self._ctx = ctx
        self._uow = PostgresUnitOfWork(conn)
        self.transaction = conn.transaction()

    async def start(self, clients: list[str]) -> None:
        await self.conn.execute("SET deadlock_timeout = '60s'")  # never the one rolled back
        await self.transaction.start()
        await self._uow.lock_streams([f"client-{c}" for c in clients])

    async def write(self, item: SubmittedEvent) -> None:
        digest = submission_hash(item, self._ctx.hash_key)
        self._uow.stage(recorded(item), topic=self._ctx.topic, submission_hash=digest)
        await self._uow.commit()

    async def end(self, ends: str) -> None:
        await (self.transaction.commit() if ends == "commits" else self.transaction.rollback())


async def counted(path: str, before: tuple[float, float]) -> None:
    """Until the id-order runs again of ``path`` passed ``before``'s (bounded by the caller)."""
    while True:
        if reruns(path)[1] != before[1]:
            return
        await asyncio.sleep(0.02)


def start_intake(
    path: str, url: str, tokens: TokenFactory, committer: GroupCommitter, mine: list[Any]
) -> asyncio.Future[list[tuple[Any, ...]]]:
    if path == "batch":
        return asyncio.ensure_future(batch(url, tokens, mine))
    callers = CALLERS[:1] * 2 if path.endswith("one caller") else CALLERS
    return asyncio.ensure_future(singles(committer, mine, callers))


@pytest.mark.parametrize("ends", ["commits", "rolls back"])
@pytest.mark.parametrize("path", ["batch", "group commit, one caller"])
async def test_two_writers_in_id_order_wait_once_without_a_cycle(
    served: tuple[FastAPI, str],
    settings: BranchlineSettings,
    tokens: TokenFactory,
    path: str,
    ends: str,
) -> None:
    """Opposite orders of items, both writers in id order: intake sends ``[X on a, Y on b]``
    in one write (a batch, or one caller's group), the other writes ``Y on c`` and then ``X
    on d`` (two statements, ``Y < X``: in order). Intake inserts ``Y`` first and waits for
    the other writer, holding no id; the other's ``X`` is not waited for. No cycle, no run
    again: intake is answered as the idempotency rules say once the other ends. Until Round
    24 intake inserted ``X`` first: a cycle, broken after 1 s, and the transaction run again."""
    application, url = served
    ctx: IntakeContext = application.state.intake
    run = uuid.uuid4().hex[:6]
    y, x = ids_in_order()
    a, b, c, d = (f"C-{run}-{s}" for s in "abcd")
    mine = [registration(a, x), registration(b, y)]
    label = "batch" if path == "batch" else "group"
    before = reruns(label)
    async with other_holding(settings, ctx, [c, d], (c, y)) as (
        other,
        intake_waits,
    ):
        task = start_intake(path, url, tokens, application.state.group_commit, mine)
        await intake_waits()  # on Y
        # X: intake holds no id (it waits for Y, the lower), so this does not wait.
        await asyncio.wait_for(other.write(SubmittedEvent.model_validate(registration(d, x))), 20)
        await other.end(ends)
        answers = await asyncio.wait_for(task, 30)
    if ends == "commits":  # both ids are the other writer's events: reused for others here
        assert answers == [(409, "idempotency-conflict")] * 2, answers
        expected = [(y, f"client-{c}", 1), (x, f"client-{d}", 1)]
    else:
        assert answers == [(202, f"client-{a}"), (202, f"client-{b}")], answers
        expected = [(x, f"client-{a}", 1), (y, f"client-{b}", 1)]
    assert await stored(settings, [x, y]) == expected  # each once, with its outbox row
    assert reruns(label) == before  # no cycle broken, nothing out of the id order


@pytest.mark.parametrize("path", ["batch", "group commit", "group commit, one caller"])
async def test_a_write_out_of_the_id_order_does_not_wait(
    served: tuple[FastAPI, str],
    settings: BranchlineSettings,
    tokens: TokenFactory,
    path: str,
) -> None:
    """Opposite orders, the other writer out of the id order: intake sends ``[X on a, Y on
    b]`` with ``X < Y`` (in order, whether one write or two callers' writes), the other
    writes ``Y on c`` and then ``X on d``, below the ``Y`` it holds. Intake waits for ``Y``
    holding ``X``; the other's ``X`` meets intake's uncommitted ``X`` and does not wait for it:
    the store raises ``EventIdsBusy`` (a batch or a group of intake runs again then), and
    once it gives up intake stores both. Until Round 24 the other's ``X`` waited: a cycle."""
    application, url = served
    ctx: IntakeContext = application.state.intake
    run = uuid.uuid4().hex[:6]
    x, y = ids_in_order()
    a, b, c, d = (f"C-{run}-{s}" for s in "abcd")
    mine = [registration(a, x), registration(b, y)]
    label = "batch" if path == "batch" else "group"
    before = reruns(label)
    async with other_holding(settings, ctx, [c, d], (c, y)) as (
        other,
        intake_waits,
    ):
        task = start_intake(path, url, tokens, application.state.group_commit, mine)
        await intake_waits()  # on Y
        with pytest.raises(EventIdsBusy):
            await asyncio.wait_for(
                other.write(SubmittedEvent.model_validate(registration(d, x))), 20
            )
        await other.end("rolls back")
        answers = await asyncio.wait_for(task, 30)
    assert answers == [(202, f"client-{a}"), (202, f"client-{b}")], answers
    assert await stored(settings, [x, y]) == [(x, f"client-{a}", 1), (y, f"client-{b}", 1)]
    assert reruns(label) == before  # intake, in order, neither rolled back nor run again


@pytest.mark.parametrize("ends", ["commits", "rolls back"])
async def test_a_group_out_of_the_id_order_runs_each_caller_alone(
    served: tuple[FastAPI, str], settings: BranchlineSettings, ends: str
) -> None:
    """Two callers of one group, the second's id below the first's: ``X on a`` (caller 1),
    then ``Y on b`` (caller 2), ``Y < X``, while the other writer holds ``Y`` uncommitted.
    Caller 2's write is out of the id order (the group holds ``X``): it does not wait, the
    group rolls back and each caller runs again alone; caller 1 commits ``X``, caller 2 then
    waits for ``Y`` in order and is answered by the idempotency rules. Until Round 24 caller
    2 waited for ``Y`` holding ``X``: with the other writer's ``X`` next, a cycle. The group
    is written the ordinary way (no guess): since Round 25 such a group is first tried as one
    statement, which inserts both ids in id order (below)."""
    application, _ = served
    ctx: IntakeContext = application.state.intake
    committer = GroupCommitter(ctx, guess_new_streams=False)
    run = uuid.uuid4().hex[:6]
    y, x = ids_in_order()
    a, b, c = (f"C-{run}-{s}" for s in "abc")
    mine = [registration(a, x), registration(b, y)]
    before = reruns("group")
    async with other_holding(settings, ctx, [c], (c, y)) as (
        other,
        intake_waits,
    ):
        task = asyncio.ensure_future(singles(committer, mine, CALLERS))
        await asyncio.wait_for(counted("group", before), 20)  # gave way, and runs again
        await intake_waits()  # on Y
        await other.end(ends)
        answers = await asyncio.wait_for(task, 30)
    if ends == "commits":  # Y is the other writer's event: reused for another here
        assert answers == [(202, f"client-{a}"), (409, "idempotency-conflict")], answers
        expected = [(x, f"client-{a}", 1), (y, f"client-{c}", 1)]
    else:
        assert answers == [(202, f"client-{a}"), (202, f"client-{b}")], answers
        expected = [(x, f"client-{a}", 1), (y, f"client-{b}", 1)]
    assert await stored(settings, [x, y]) == expected
    assert reruns("group") == (before[0], before[1] + 1)  # no cycle broken; once in order


@pytest.mark.parametrize("ends", ["commits", "rolls back"])
async def test_a_guessed_group_takes_its_callers_ids_in_id_order(
    served: tuple[FastAPI, str], settings: BranchlineSettings, ends: str
) -> None:
    """The group above, two callers sending ``X on a`` then ``Y on b`` (``Y < X``) while the
    other writer holds ``Y``, tried as the one guessed statement (Round 25): it inserts ``Y``
    first, whatever the callers' order, and waits for it holding no id, so the other's ``X``
    next is not waited for and nothing is run again. The other commits: the statement fails
    on ``Y`` and the ordinary way answers both (409 each: both ids are the other's); it rolls
    back: the statement writes both. A guessed write in the callers' order would hold ``X``
    while waiting: a cycle, broken after 1 s by failing intake's statement (a wrong guess,
    and the group the ordinary way). Before Round 25 the group took the ordinary way
    (caller 2 out of the id order: a run again)."""
    application, _ = served
    ctx: IntakeContext = application.state.intake
    committer = GroupCommitter(ctx, writers=1)
    run = uuid.uuid4().hex[:6]
    y, x = ids_in_order()
    a, b, c, d = (f"C-{run}-{s}" for s in "abcd")
    mine = [registration(a, x), registration(b, y)]
    before = (reruns("group"), guesses())
    async with other_holding(settings, ctx, [c, d], (c, y)) as (other, intake_waits):
        task = asyncio.ensure_future(singles(committer, mine, CALLERS))
        await intake_waits()  # on Y
        # X: intake holds no id (it waits for Y, the lower), so this does not wait.
        await asyncio.wait_for(other.write(SubmittedEvent.model_validate(registration(d, x))), 20)
        await other.end(ends)
        answers = await asyncio.wait_for(task, 30)
    written, wrong = before[1]
    if ends == "commits":
        assert answers == [(409, "idempotency-conflict")] * 2, answers
        expected = [(y, f"client-{c}", 1), (x, f"client-{d}", 1)]
        # failed on Y, stored meanwhile; the store then names both ids stored (Round 27),
        # so both callers go the ordinary way, nothing guessed again (Round 26: guessed
        # again without Y's caller, failed on X)
        assert guesses() == (written, wrong + 1)
    else:
        assert answers == [(202, f"client-{a}"), (202, f"client-{b}")], answers
        expected = [(x, f"client-{a}", 1), (y, f"client-{b}", 1)]
        assert guesses() == (written + 1, wrong)  # the one statement stood
    assert await stored(settings, [x, y]) == expected
    assert reruns("group") == before[0]  # no cycle broken, nothing out of the id order


@pytest.mark.parametrize("ends", ["commits", "rolls back"])
async def test_a_batch_part_out_of_the_id_order_runs_again_in_one_write(
    served: tuple[FastAPI, str],
    settings: BranchlineSettings,
    tokens: TokenFactory,
    ends: str,
) -> None:
    """A batch of 201 items is written in two parts; the first holds an id above every
    other (``H``), the second's one item has ``Y``, below it, which the other writer holds
    uncommitted. The second part does not wait: the batch rolls back and runs again with
    its events in one write, in id order, which waits for ``Y`` first and is answered by the
    idempotency rules. Until Round 24 the second part waited for ``Y`` holding ``H``."""
    application, url = served
    ctx: IntakeContext = application.state.intake
    run = uuid.uuid4().hex[:6]
    high = uuid.UUID(int=uuid.uuid4().int | (0xFFFFFFFF << 96))  # above any fresh id
    y = uuid.UUID(int=uuid.uuid4().int & ((1 << 96) - 1))  # below any fresh id
    items = [registration(f"C-{run}-{i}", None) for i in range(199)]
    items += [registration(f"C-{run}-h", high), registration(f"C-{run}-y", y)]
    before = reruns("batch")
    async with other_holding(settings, ctx, [f"C-{run}-c"], (f"C-{run}-c", y)) as (
        other,
        intake_waits,
    ):
        task = asyncio.ensure_future(batch(url, tokens, items))
        await asyncio.wait_for(counted("batch", before), 20)  # gave way, and runs again
        await intake_waits()  # on Y
        await other.end(ends)
        answers = await asyncio.wait_for(task, 30)
    assert answers[:200] == [(202, f"client-C-{run}-{i}") for i in range(199)] + [
        (202, f"client-C-{run}-h")
    ]
    if ends == "commits":
        assert answers[200] == (409, "idempotency-conflict")
        assert await stored(settings, [y]) == [(y, f"client-C-{run}-c", 1)]
    else:
        assert answers[200] == (202, f"client-C-{run}-y")
        assert await stored(settings, [y]) == [(y, f"client-C-{run}-y", 1)]
    assert reruns("batch") == (before[0], before[1] + 1)  # no cycle broken; once in order


async def test_a_write_keeps_its_stream_order_in_positions_and_outbox(
    served: tuple[FastAPI, str], settings: BranchlineSettings
) -> None:
    """A write inserts its events in id order, but their global positions and outbox rows
    follow the order they were staged in (a stream's version order), whatever their ids:
    readers of the log and the relay see a stream in order. (``served``: the app's start
    makes and migrates the test's databases.)"""
    client = f"C-{uuid.uuid4().hex[:6]}"
    ids = sorted((uuid.uuid4() for _ in range(3)), reverse=True)  # descending by version
    events = [
        recorded(SubmittedEvent.model_validate(registration(client, i))).model_copy(
            update={"stream_version": n}
        )
        for n, i in enumerate(ids, 1)
    ]
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        async with conn.transaction():
            uow = PostgresUnitOfWork(conn)
            await uow.lock_streams([f"client-{client}"])
            for e in events:
                uow.stage(e, topic="t", submission_hash=None)
            positions = await uow.commit()
        rows = await conn.fetch(
            "SELECT e.event_id, e.global_position, o.id FROM es_events e "
            "JOIN es_outbox o USING (event_id) WHERE e.event_id = ANY($1::uuid[]) "
            "ORDER BY e.stream_version",
            ids,
        )
    finally:
        await conn.close()
    assert [r["event_id"] for r in rows] == ids
    assert [r["global_position"] for r in rows] == sorted(r["global_position"] for r in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert [p.global_position for p in positions] == [r["global_position"] for r in rows]


@pytest.mark.parametrize("waits_out_of_order", [False, True])
async def test_a_later_lock_wait_after_a_write_out_of_the_id_order(
    served: tuple[FastAPI, str], settings: BranchlineSettings, waits_out_of_order: bool
) -> None:
    """After a write out of the id order, the rest of an intake transaction's lock waits are
    cut short (55P03 after ``_NO_WAIT``); a writer that waits out of order (followup's units,
    whose ids are their own) waits as before: its read models' rows, which racing timer
    runners contend for, are waited for (Round 24's no-wait bound failed those waits,
    `LockNotAvailableError` in the racing-runners test under load)."""
    client = f"C-{uuid.uuid4().hex[:6]}"
    low, high = ids_in_order()
    events = [
        recorded(SubmittedEvent.model_validate(registration(client, i))).model_copy(
            update={"stream_version": n}
        )
        for n, i in enumerate([high, low], 1)
    ]
    stream = f"client-{client}"
    conn = await asyncpg.connect(settings.intake_database_url)
    other = await asyncpg.connect(settings.intake_database_url)
    try:
        await other.execute("CREATE TABLE IF NOT EXISTS lock_probe (id int PRIMARY KEY)")
        await other.execute("INSERT INTO lock_probe VALUES (1) ON CONFLICT DO NOTHING")
        async with conn.transaction():
            uow = PostgresUnitOfWork(conn, waits_out_of_order=waits_out_of_order)
            await uow.lock_streams([stream])
            for e in events:  # two writes, the second below the first
                uow.stage(e, topic="t", submission_hash=None)
                await uow.commit()
            async with other.transaction():
                await other.execute("SELECT 1 FROM lock_probe WHERE id = 1 FOR UPDATE")
                waiting = asyncio.ensure_future(
                    conn.execute("SELECT 1 FROM lock_probe WHERE id = 1 FOR UPDATE")
                )
                await asyncio.sleep(0.3)  # well past the 50 ms bound
            if waits_out_of_order:
                await asyncio.wait_for(waiting, 10)
            else:
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await asyncio.wait_for(waiting, 10)
                raise _RolledBack
    except _RolledBack:
        pass
    finally:
        await conn.close()
        await other.close()


class _RolledBack(Exception):
    """Leaves a transaction whose statement failed (rolled back, as a writer's would be)."""


def test_followups_event_writes_wait_out_of_order() -> None:
    """Followup's units of work write their events through the store's unit of work with
    ``waits_out_of_order`` (their ids are their own)."""
    from branchline_followup.adapters.unit_of_work import _Events

    events = _Events(None)  # type: ignore[arg-type]
    assert events._writes._waits_out_of_order


async def batch(
    url: str, tokens: TokenFactory, items: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """``items`` as one batch over HTTP: the answer per item, or the whole request's."""
    async with httpx.AsyncClient(
        base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=30
    ) as client:
        response = await client.post("/v1/events:batch", json={"events": items})
    if response.status_code != 200:
        return [shape(response.status_code, response.json())]
    return [shape(r["status"], r) for r in response.json()["results"]]


async def singles(
    committer: GroupCommitter, items: list[dict[str, Any]], callers: list[Principal]
) -> list[tuple[Any, ...]]:
    """Each item as a ``POST /v1/events`` of its caller, answered as the route answers
    (``submit_one``; an error is the route's 500), queued in order: one group, the first item
    written before the second (two callers: each in a savepoint of its own; one: both its
    items in one unit of work, without a savepoint)."""

    async def one(item: dict[str, Any], caller: Principal) -> tuple[Any, ...]:
        event = SubmittedEvent.model_validate(item)
        try:
            status, body, _ = await submit_one(committer, event, caller, checked=False)
        except Exception as exc:  # what the app's handler answers with a 500
            return (500, repr(exc))
        return shape(status, body)

    return list(await asyncio.gather(*(one(i, c) for i, c in zip(items, callers, strict=True))))
