"""Two writers storing the same client-chosen event ids on different streams, in opposite
orders, wait on each other in ``es_events``' unique index on ``event_id``: each holds the id
it inserted first (uncommitted) and waits for the other's transaction to learn whether the
other id is taken. No stream lock is shared, so the sorted stream pass (docs/intake.md, "Lock
order") cannot order them; the server breaks the cycle by rolling one back (40P01). That
transaction is run again, nothing having been answered, and every caller gets what the
idempotency rules say for its id (#12): accepted if the other writer gave up, else the id
is taken by another event (409 ``idempotency-conflict``). Until Round 23 the rolled-back
batch, or the group's caller, was answered with the error: a 500.

The other writer is staged step by step on a connection of the test's, by the store's own
statements, with a ``deadlock_timeout`` long enough that the server always rolls back the
intake app's transaction (whose check for a cycle runs after the default 1 s)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
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
from branchline_shared.eventstore.postgres import PostgresUnitOfWork
from branchline_shared.http.auth import Principal, Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.events import registration_body
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

RERUNS = "branchline_intake_lock_cycle_reruns_total"
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


@pytest.mark.parametrize("ends", ["commits", "rolls back"])
@pytest.mark.parametrize("path", ["batch", "group commit", "group commit, one caller"])
async def test_a_cycle_on_event_ids_is_run_again_and_answered_by_the_idempotency_rules(
    served: tuple[FastAPI, str],
    settings: BranchlineSettings,
    tokens: TokenFactory,
    path: str,
    ends: str,
) -> None:
    application, url = served
    ctx: IntakeContext = application.state.intake
    committer: GroupCommitter = application.state.group_commit
    run = uuid.uuid4().hex[:6]
    x, y = uuid.uuid4(), uuid.uuid4()
    a, b, c, d = (f"C-{run}-{s}" for s in "abcd")
    # This writer: X on client a, then Y on b. The other: Y on c, then X on d.
    mine = [registration(a, x), registration(b, y)]
    theirs = [
        SubmittedEvent.model_validate(registration(c, y)),
        SubmittedEvent.model_validate(registration(d, x)),
    ]
    label = {"path": "batch" if path == "batch" else "group"}
    reruns = REGISTRY.get_sample_value(RERUNS, label) or 0
    other = await asyncpg.connect(settings.intake_database_url)
    watcher = await asyncpg.connect(settings.intake_database_url)
    try:
        await other.execute("SET deadlock_timeout = '60s'")  # never the one rolled back
        transaction = other.transaction()
        await transaction.start()
        uow = PostgresUnitOfWork(other)
        await uow.lock_streams([f"client-{c}", f"client-{d}"])

        async def write(item: SubmittedEvent) -> None:
            digest = submission_hash(item, ctx.hash_key)
            uow.stage(recorded(item), topic=ctx.topic, submission_hash=digest)
            await uow.commit()

        await write(theirs[0])  # Y, uncommitted
        if path == "batch":
            task = asyncio.ensure_future(batch(url, tokens, mine))
        else:
            callers = CALLERS[:1] * 2 if path.endswith("one caller") else CALLERS
            task = asyncio.ensure_future(singles(committer, mine, callers))
        await asyncio.wait_for(others_wait(watcher, other.get_server_pid()), 20)  # on Y
        try:
            # X: waits for this writer's uncommitted X, while this writer waits for Y.
            await asyncio.wait_for(write(theirs[1]), 20)
        except asyncpg.UniqueViolationError:
            ends = "gave up"  # this writer's X was committed meanwhile (before Round 23)
        await (transaction.commit() if ends == "commits" else transaction.rollback())
        answers = await asyncio.wait_for(task, 30)
    finally:
        await other.close()
        await watcher.close()
    if ends == "commits":  # both ids are the other writer's events: reused for others here
        assert answers == [(409, "idempotency-conflict")] * 2, answers
        expected = [(y, f"client-{c}", 1), (x, f"client-{d}", 1)]
    else:
        assert answers == [(202, f"client-{a}"), (202, f"client-{b}")], answers
        expected = [(x, f"client-{a}", 1), (y, f"client-{b}", 1)]
    assert await stored(settings, [x, y]) == expected  # each once, with its outbox row
    assert REGISTRY.get_sample_value(RERUNS, label) == reruns + 1  # run again once


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
