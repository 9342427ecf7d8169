"""A refusal decided on the guess (a refusal to record, which no guessed statement writes)
sends only its caller the ordinary way; the rest of the group is guessed again, once (Round
28, #12, docs/intake.md, "Group commit with the callers' own event ids"). Every caller gets
the outcome the ordinary way gives it: the refused one refused by its rule (D-09) and
recorded once, its other items decided with it, the others accepted by one guessed
statement of their own."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI

from branchline_intake.application.outcomes import Accepted, Refusal, Refused
from branchline_intake.application.submit import IntakeContext, refusal_event_id
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_group_commit import BRANCH, registration
from tests.integration.test_group_commit_event_ids import FOURTH, recorded_committer
from tests.integration.test_group_commit_guessed import (
    OTHER,
    THIRD,
    connected,
    guesses,
    restarted,
    together,
)
from tests.integration.test_group_commit_refused_resends import consent_with, events_of
from tests.integration.test_group_commit_resends import accepted, guessed_writes, kept_out

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.mark.parametrize("with_accepted", [False, True], ids=["refusal alone", "with an accepted"])
async def test_a_refusal_on_the_guess_sends_only_its_caller_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings, with_accepted: bool
) -> None:
    """A first consent for a client never registered (D-09), sent by one branch system (alone,
    or after a registration of a new client in the same request), in a group with two other
    branch systems' new registrations. Decided on the guess the consent is refused, a refusal
    to record: nothing is sent, its caller goes the ordinary way, where it is refused again
    and its refusal recorded once (its registration accepted there); the two others are
    guessed again and written by one statement, one transaction of their own."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client, sent, own = f"C-GA{run}", uuid.uuid4(), uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(2)]
    items = [consent_with(client, sent)]
    if with_accepted:
        items = [registration(f"C-GD{run}", own), *items]
    written, wrong, refusal = guesses("written"), guesses("wrong"), kept_out("refusal")
    async with recorded_committer(ctx, settings) as (committer, statements):
        mine, other, third = await together(
            committer,
            (items, BRANCH),
            ([registration(f"C-GB{run}", ids[0])], OTHER),
            ([registration(f"C-GC{run}", ids[1])], THIRD),
        )
    assert isinstance(mine, list), mine
    refused = mine[-1]
    assert isinstance(refused, Refused), refused
    assert (refused.reason, refused.rule, refused.event_id) == (
        Refusal.RULE_VIOLATION,
        "D-09",
        sent,
    )
    if with_accepted:
        assert isinstance(mine[0], Accepted), mine
        assert mine[0].position.event_id == own
    for answer, new in zip((other, third), ids, strict=True):
        assert not accepted(answer, new).duplicate
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert kept_out("refusal") == refusal + 1
    assert guessed_writes(statements) == 1, statements
    async with connected(settings) as conn:
        recorded = await events_of(conn, f"refusals-{client}")
        assert [r["event_id"] for r in recorded] == [refusal_event_id(sent)]
        assert await events_of(conn, f"client-{client}") == []
        news = [await events_of(conn, f"client-C-G{c}{run}") for c in "BC"]
        guessed_tx = {r["tx"] for n in news for r in n}
        assert len(guessed_tx) == 1
        assert recorded[0]["tx"] not in guessed_tx  # the refused caller: its own transaction
        if with_accepted:
            (registered,) = await events_of(conn, f"client-C-GD{run}")
            assert registered["tx"] == recorded[0]["tx"]


async def test_a_group_of_one_refused_caller_runs_the_ordinary_way_whole(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Guard: the refused caller is the only one guessed: nothing is guessed again (no
    statement that could stand), the group runs the ordinary way once, as before (D-09)."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client, sent = f"C-GE{run}", uuid.uuid4()
    written, wrong, refusal = guesses("written"), guesses("wrong"), kept_out("refusal")
    async with recorded_committer(ctx, settings) as (committer, statements):
        (mine,) = await together(committer, ([consent_with(client, sent)], BRANCH))
    assert isinstance(mine, list), mine
    assert isinstance(mine[0], Refused), mine
    assert (guesses("written"), guesses("wrong")) == (written, wrong + 1)
    assert kept_out("refusal") == refusal
    assert guessed_writes(statements) == 0, statements


async def test_a_second_guess_refused_on_a_resend_sends_only_its_caller_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """A group of a first consent for a client never registered (D-09), a registration another
    process stored, sent again by its branch system, and two new registrations (Round 29,
    #12). The first guess is refused on the refusal to record (nothing sent): the consent's
    caller goes the ordinary way. The second guess's statement is refused on the stored id:
    the resend's caller goes the ordinary way too, and the two new registrations are written
    by a third guessed statement. Until Round 29 the second refusal sent all three the
    ordinary way (no guessed statement written)."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client, sent, resent = f"C-GF{run}", uuid.uuid4(), uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(2)]
    stored_before = registration(f"C-GG{run}", resent)
    async with recorded_committer(restarted(app, settings), settings) as (elsewhere, _):
        (first,) = await together(elsewhere, ([stored_before], OTHER))
    assert not accepted(first, resent).duplicate
    written, wrong = guesses("written"), guesses("wrong")
    refusal, named = kept_out("refusal"), kept_out("named")
    async with recorded_committer(ctx, settings) as (committer, statements):
        mine, again, third, fourth = await together(
            committer,
            ([consent_with(client, sent)], BRANCH),
            ([stored_before], OTHER),
            ([registration(f"C-GH{run}", ids[0])], THIRD),
            ([registration(f"C-GI{run}", ids[1])], FOURTH),
        )
    assert isinstance(mine, list), mine
    assert isinstance(mine[0], Refused), mine
    assert (mine[0].reason, mine[0].rule) == (Refusal.RULE_VIOLATION, "D-09")
    assert accepted(again, resent).duplicate
    for answer, new in zip((third, fourth), ids, strict=True):
        assert not accepted(answer, new).duplicate
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 2)
    assert (kept_out("refusal"), kept_out("named")) == (refusal + 1, named + 1)
    assert guessed_writes(statements) == 2, statements  # the refused one, the written one
    async with connected(settings) as conn:
        recorded = await events_of(conn, f"refusals-{client}")
        assert [r["event_id"] for r in recorded] == [refusal_event_id(sent)]
        assert len(await events_of(conn, f"client-C-GG{run}")) == 1
        news = [await events_of(conn, f"client-C-G{c}{run}") for c in "HI"]
        assert len({r["tx"] for n in news for r in n}) == 1
