"""The client's RM on its refusals (console migration 004, #12): a refusal carries its
client's current RM (NULL: no client known), kept in the transaction of every write of the
client, live (the worker's upsert, a client's re-registration to another RM, the client
journal's clear and re-projection after a late event) and in a rebuild, which ends equal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from branchline_followup.adapters import client_journal, console_refusals, read_models
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.reprojection import REPROJECTIONS
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, now_utc
from tests.integration.followup.test_followup_order import (
    _context,
    apply_all,
    differences_from_rebuild,
    positioned,
)
from tests.support.events import TELLER
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Selection = console_refusals.RefusalSelection


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(infra, tmp_path)


@pytest.fixture
async def context(settings: BranchlineSettings) -> AsyncIterator[FollowupContext]:
    async with _context(settings) as ctx:
        yield ctx


def refused(h: History, client_id: str, at: datetime, rule: str = "D-05") -> RecordedEvent:
    actor = TELLER.model_dump(mode="json")
    return h.add(
        "rule.violation_refused",
        client_id,
        at,
        {
            "rule": rule,
            "title": "Above the client's tolerance",
            "detail": "refused",
            "refused_event": {
                "type": "visit.arrived",
                "occurred_at": at.isoformat(),
                "client_id": client_id,
                "branch_id": "BR-001",
                "actor": actor,
                "data": {},
            },
            "submitted_by": actor,
        },
    )


def reassigning_history() -> tuple[list[RecordedEvent], RecordedEvent]:
    """C-a registered to rm-1, refused, re-registered to rm-3, refused again; C-b refused
    before it is registered to rm-2; C-z refused and never registered. Also C-a's first
    registration (to be delivered late)."""
    h = History()
    t = now_utc() - timedelta(hours=2)
    first = h.registered("C-a", t, rm_id="rm-1")
    refused(h, "C-a", t + timedelta(minutes=1))
    refused(h, "C-b", t + timedelta(minutes=2), rule="D-03")
    refused(h, "C-z", t + timedelta(minutes=3))
    h.registered("C-b", t + timedelta(minutes=4), rm_id="rm-2")
    h.registered("C-a", t + timedelta(minutes=5), rm_id="rm-3")
    refused(h, "C-a", t + timedelta(minutes=6), rule="D-03")
    return h.events, first


async def rms_of_refusals(ctx: FollowupContext) -> list[tuple[str, str | None]]:
    rows = await ctx.pool.fetch("SELECT client_id, rm_id FROM fu_refusals ORDER BY occurred_at")
    return [(r["client_id"], r["rm_id"]) for r in rows]


WANTED = [("C-a", "rm-3"), ("C-b", "rm-2"), ("C-z", None), ("C-a", "rm-3")]


async def clients_of(ctx: FollowupContext, selection: Selection) -> list[Any]:
    page = await console_refusals.refusals(ctx.pool, selection)
    return [r["client_id"] for r in page.rows]


async def test_a_refusal_carries_its_clients_current_rm_live_and_rebuilt(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    events, _ = reassigning_history()
    await apply_all(context, positioned(events))
    assert await rms_of_refusals(context) == WANTED
    # the teams' pages: the former RM's team no longer sees C-a's refusals
    assert await clients_of(context, Selection(rm_in=frozenset({"rm-3"}))) == ["C-a", "C-a"]
    assert await clients_of(context, Selection(rm_in=frozenset({"rm-1"}))) == []
    assert await clients_of(context, Selection(rm_in=frozenset({"rm-1", "rm-2"}))) == ["C-b"]
    assert await clients_of(context, Selection(rule="D-03", rm_in=frozenset({"rm-2", "rm-3"}))) == [
        "C-a",
        "C-b",
    ]
    # the default supervisor's team (everyone but the named) and an admin's (any client)
    assert await clients_of(context, Selection(rm_not_in=frozenset({"rm-3"}))) == ["C-b"]
    assert await clients_of(context, Selection(any_client=True)) == ["C-a", "C-z", "C-b", "C-a"]
    assert await clients_of(context, Selection()) == ["C-a", "C-b", "C-a"]
    assert await differences_from_rebuild(settings, positioned(events)) == {}


def _reprojections() -> float:
    return float(REPROJECTIONS._value.get())


async def test_a_late_registration_reprojects_the_client_and_its_refusals_follow(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """C-a's first registration (to rm-1) arrives after its re-registration (to rm-3): the
    client journal clears C-a (its refusals lose their RM) and projects it again in source
    order (rm-1, then rm-3): its refusals end with rm-3, as in order and as rebuilt."""
    events, first = reassigning_history()
    placed = positioned(events)
    late = next(p for p in placed if p[0] is first)
    before = _reprojections()
    await apply_all(context, [p for p in placed if p is not late])
    assert await rms_of_refusals(context) == WANTED  # C-a known (rm-3) from its re-registration
    await apply_all(context, [late])
    assert _reprojections() == before + 1
    assert await rms_of_refusals(context) == WANTED
    assert await differences_from_rebuild(settings, placed) == {}


async def test_the_journals_clear_and_save_move_the_refusals_in_their_transaction(
    context: FollowupContext,
) -> None:
    """Within one transaction: the clear (a client deleted) leaves its refusals without an
    RM; the client saved again gives them its RM; a refusal of a client never saved keeps
    none. Rolled back, nothing changed."""
    events, _ = reassigning_history()
    await apply_all(context, positioned(events))
    async with context.pool.acquire() as conn:
        facts = await read_models.fetch_client(conn, "C-a")
        assert facts is not None
        tx = conn.transaction()
        await tx.start()
        try:
            for statement in client_journal.CLEAR_CLIENT:
                await conn.execute(statement, "C-a")
            rows = await conn.fetch("SELECT rm_id FROM fu_refusals WHERE client_id = 'C-a'")
            assert [r["rm_id"] for r in rows] == [None, None]
            facts.rm_id = "rm-9"
            await read_models.save_client(conn, facts)
            rows = await conn.fetch("SELECT rm_id FROM fu_refusals WHERE client_id = 'C-a'")
            assert [r["rm_id"] for r in rows] == ["rm-9", "rm-9"]
        finally:
            await tx.rollback()
    assert await rms_of_refusals(context) == WANTED
