"""A refusal and an acceptance under one event id at the same moment (#12; docs/api.md: an
``event_id`` reused with other content is 409 ``idempotency-conflict``; docs/rules.md D-05:
the refusal is itself recorded), with real PostgreSQL, on the ordinary way.

Writer R sends a consent for a client never registered (refused by D-09, its refusal to be
recorded under the id derived from the consent's); writer A sends a registration of another
client under the SAME event id. Each decides on what it looked up; the two write different
ids (the event's and its refusal's), so the unique index does not order them. The sound
outcome: exactly one recorded, the other answered 409 ``idempotency-conflict`` naming
``event_id``, never a 5xx. The interleaving is fixed: one writer is held right after its
look-up until the other has ended (or, where a change makes it wait on the held one, for
at most a few seconds), then let go.

A writer that records a client's first refusal finds its refusal stream not created, runs
again with every lock up front and looks the ids up afresh: that closes the race in that case
only, so here the refusing client was refused once before.

Serialised since Round 30 (#12; event store migration 011): each writer claims the sent id's
bucket after its writes (the acceptance shared, the refusal exclusive) and looks afresh for
the other's row; the second finds the first's and runs again, answered 409. Until then both
were recorded, in both orders (a strict expected failure in Round 29)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from fastapi import FastAPI

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import (
    LOCK_CYCLE_RERUNS,
    IntakeContext,
    refusal_event_id,
    submit_events,
)
from branchline_shared.events.envelope import Actor
from branchline_shared.eventstore.postgres import EVENT_ID_BUCKETS, EVENT_ID_CLAIM_CLASS
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_group_commit import BRANCH, registration
from tests.integration.test_group_commit_guessed import connected, guesses
from tests.integration.test_group_commit_refused_resends import consent_with

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

_SENDER = Actor(id="race", role="admin")


class _HeldAfterLookUp:
    """``store`` whose units of work stop after their look-up of event ids until let go."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.looked_up = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Any]:
        async with self._store.unit_of_work() as uow:
            yield _HeldUnit(uow, self)


class _HeldUnit:
    def __init__(self, uow: Any, held: _HeldAfterLookUp) -> None:
        self._uow = uow
        self._held = held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)

    async def find_existing(self, event_ids: Sequence[uuid.UUID]) -> Any:
        found = await self._uow.find_existing(event_ids)
        self._held.looked_up.set()
        await self._held.go.wait()
        return found


async def _refused_once(ctx: IntakeContext, client_id: str) -> None:
    """A first refusal of the client (D-09): its refusal stream exists, so the race's writer
    does not run again with every lock up front (which would close the race by accident)."""
    [earlier] = await submit_events(
        ctx, [consent_with(client_id, uuid.uuid4())], submitted_by=_SENDER
    )
    assert _outcome_kind(earlier) == "refused"


def _outcome_kind(outcome: Outcome) -> str:
    if isinstance(outcome, Accepted):
        return "accepted"
    assert isinstance(outcome, Refused), outcome
    if outcome.reason is Refusal.IDEMPOTENCY_CONFLICT:
        assert outcome.issues is not None
        assert [i.field for i in outcome.issues] == ["event_id"]
        return "reused"
    assert (outcome.reason, outcome.rule) == (Refusal.RULE_VIOLATION, "D-09"), outcome
    return "refused"


@pytest.mark.parametrize("held", ["the refusing writer", "the accepting writer"])
async def test_a_refusal_and_an_acceptance_under_one_id_record_one(
    app: FastAPI, settings: BranchlineSettings, held: str
) -> None:
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    sent = uuid.uuid4()
    refused_item = consent_with(f"C-XR{run}", sent)  # D-09: never registered
    accepted_item = registration(f"C-XA{run}", sent)  # another event, the same id
    # The refusing client's refusal stream exists (an earlier consent refused): a first
    # refusal would find it not created, run again with every lock up front and look the
    # ids up afresh, which closes the race in that case only.
    await _refused_once(ctx, f"C-XR{run}")
    store = _HeldAfterLookUp(ctx.store)
    first_item, second_item = (
        (refused_item, accepted_item)
        if held == "the refusing writer"
        else (accepted_item, refused_item)
    )
    first = asyncio.ensure_future(
        submit_events(dataclasses.replace(ctx, store=store), [first_item], submitted_by=_SENDER)
    )
    async with asyncio.timeout(10):
        await store.looked_up.wait()
    second = asyncio.ensure_future(submit_events(ctx, [second_item], submitted_by=_SENDER))
    await asyncio.wait({second}, timeout=3)  # ended, or waiting on the held writer
    store.go.set()
    async with asyncio.timeout(20):
        [first_outcome], [second_outcome] = await asyncio.gather(first, second)
    kinds = sorted([_outcome_kind(first_outcome), _outcome_kind(second_outcome)])
    async with connected(settings) as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM es_events WHERE event_id = ANY($1::uuid[])",
            [sent, refusal_event_id(sent)],
        )
    # Exactly one decided and recorded; the other a reused id (409 naming event_id).
    assert stored == 1, (kinds, stored)
    assert kinds in (["accepted", "reused"], ["refused", "reused"]), kinds


async def test_an_acceptance_on_the_guess_and_a_refusal_under_one_id_record_one(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """The accepting writer goes the group commit's guessed way (one self-committing
    statement, #12) while the refusing writer is held after its look-up: the guessed write
    claims the id's bucket and commits first; the refusal's claim then finds the event and
    its transaction runs again, answered 409."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    sent = uuid.uuid4()
    await _refused_once(ctx, f"C-XR{run}")
    store = _HeldAfterLookUp(ctx.store)
    refusing = asyncio.ensure_future(
        submit_events(
            dataclasses.replace(ctx, store=store),
            [consent_with(f"C-XR{run}", sent)],
            submitted_by=_SENDER,
        )
    )
    async with asyncio.timeout(10):
        await store.looked_up.wait()
    written = guesses("written")
    async with asyncio.timeout(10):
        [accepted] = await GroupCommitter(ctx, writers=1).submit(
            [registration(f"C-XA{run}", sent)], submitted_by=BRANCH
        )
    assert guesses("written") == written + 1  # it went the guessed way
    store.go.set()
    async with asyncio.timeout(20):
        [refused] = await refusing
    assert (_outcome_kind(accepted), _outcome_kind(refused)) == ("accepted", "reused")
    async with connected(settings) as conn:
        stored = await conn.fetch(
            "SELECT event_id FROM es_events WHERE event_id = ANY($1::uuid[])",
            [sent, refusal_event_id(sent)],
        )
    assert [r["event_id"] for r in stored] == [sent]


async def test_a_guess_waits_for_a_refusal_in_flight_and_looks_again(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """The refusal's transaction holds the id's bucket (its commit held back by a test
    connection holding the bucket first) while a guessed write of another event under the id
    runs: the guess waits for the refusal's commit, then looks the refusal's id up afresh
    (its statement's own snapshot is older), fails and is decided the ordinary way: 409.
    (A guard: without claims the refusal is committed before the guess is sent.)"""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    sent = uuid.uuid4()
    await _refused_once(ctx, f"C-XR{run}")
    bucket = sent.int % EVENT_ID_BUCKETS
    async with connected(settings) as holder, connected(settings) as watcher:
        waiting = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid = $1::oid AND objid = $2::oid AND objsubid = 2"
        )

        async def waiters(count: int) -> None:
            for _ in range(100):  # up to 5 s: none wait without claims
                if await watcher.fetchval(waiting, EVENT_ID_CLAIM_CLASS, bucket) >= count:
                    return
                await asyncio.sleep(0.05)

        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1, $2)", EVENT_ID_CLAIM_CLASS, bucket)
        refusing = asyncio.ensure_future(
            submit_events(ctx, [consent_with(f"C-XR{run}", sent)], submitted_by=_SENDER)
        )
        await waiters(1)
        accepting = asyncio.ensure_future(
            GroupCommitter(ctx, writers=1).submit(
                [registration(f"C-XA{run}", sent)], submitted_by=BRANCH
            )
        )
        await waiters(2)
        await tx.commit()
    async with asyncio.timeout(20):
        [refused], [accepted] = await asyncio.gather(refusing, accepting)
    assert (_outcome_kind(refused), _outcome_kind(accepted)) == ("refused", "reused")
    async with connected(settings) as conn:
        stored = await conn.fetch(
            "SELECT event_id FROM es_events WHERE event_id = ANY($1::uuid[])",
            [sent, refusal_event_id(sent)],
        )
    assert [r["event_id"] for r in stored] == [refusal_event_id(sent)]


@pytest.mark.timeout(180)
async def test_concurrent_refusals_and_acceptances_of_shared_ids_neither_deadlock_nor_fail(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Many writers at once (group commits of single events and batches of 1,000), a share of
    refusals, their ids overlapping: every answer a decision (no 5xx, no error), no lock
    cycle broken by the server, no "out of shared memory" (at most a bucket's lock per
    transaction, whatever its size), and no id both refused and accepted."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    refusing = f"C-XR{run}"
    await _refused_once(ctx, refusing)
    ids = [uuid.UUID(int=(uuid.uuid4().int & ~0xFFFF) | i) for i in range(64)]
    committer = GroupCommitter(ctx, writers=4)
    cycles = [LOCK_CYCLE_RERUNS.labels(path=p)._value.get() for p in ("group", "batch")]
    singles = [
        committer.submit(
            [
                consent_with(refusing, ids[i % 64])
                if i % 3 == 0
                else registration(f"C-XS{run}-{i}", ids[i % 64])
            ],
            submitted_by=BRANCH if i % 3 else _SENDER,
        )
        for i in range(96)
    ]
    batches = [
        submit_events(
            ctx,
            [
                consent_with(refusing, ids[(b + j) % 64])
                if j % 20 == 0
                else registration(f"C-XB{run}-{b}-{j}", None if j >= 64 else ids[(b + j) % 64])
                for j in range(1000)
            ],
            submitted_by=_SENDER,
        )
        for b in range(6)
    ]
    async with asyncio.timeout(170):
        answers = await asyncio.gather(*singles, *batches)
    kinds = collections.Counter(_any_kind(outcome) for answer in answers for outcome in answer)
    assert set(kinds) <= {"accepted", "refused", "reused"}, kinds
    assert [LOCK_CYCLE_RERUNS.labels(path=p)._value.get() for p in ("group", "batch")] == cycles
    async with connected(settings) as conn:
        both = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::uuid[], $2::uuid[]) AS u(sent, refusal)"
            " WHERE EXISTS (SELECT FROM es_events WHERE event_id = u.sent)"
            " AND EXISTS (SELECT FROM es_events WHERE event_id = u.refusal)",
            ids,
            [refusal_event_id(i) for i in ids],
        )
    assert both == 0


def _any_kind(outcome: Outcome) -> str:
    if isinstance(outcome, Accepted):
        return "accepted"
    if isinstance(outcome, Refused) and outcome.reason is Refusal.RULE_VIOLATION:
        return "refused"
    if isinstance(outcome, Refused) and outcome.reason is Refusal.IDEMPOTENCY_CONFLICT:
        return "reused"
    return repr(outcome)
