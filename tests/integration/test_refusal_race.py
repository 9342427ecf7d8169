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

Not serialised yet (Round 29 found no sound change that fits the lock table: see
docs/performance.md, Round 29 "Refusal edge cases"): both are recorded, in both orders. The
test is a strict expected failure: it fails as soon as a change serialises the two, and is to
be turned into an ordinary test then."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from fastapi import FastAPI

from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import IntakeContext, refusal_event_id, submit_events
from branchline_shared.events.envelope import Actor
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_group_commit import registration
from tests.integration.test_group_commit_guessed import connected
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


@pytest.mark.xfail(
    strict=True, reason="a refusal and an acceptance under one id are not serialised (#12)"
)
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
    [earlier] = await submit_events(
        ctx, [consent_with(f"C-XR{run}", uuid.uuid4())], submitted_by=_SENDER
    )
    assert _outcome_kind(earlier) == "refused"
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
