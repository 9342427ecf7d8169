"""A guessed group that holds a resend (Round 26, #12, docs/intake.md, "Group commit with the
callers' own event ids"): since Round 25 the callers' own event ids take the one
self-committing statement, and one resent id made the whole group's guess wrong, every
caller decided again the ordinary way. Now the resend alone goes the ordinary way:

- in the process that remembers its stream ending with the very id it sends, it is kept out
  of the guess before any statement (its decision on the guess would refuse it: D-09);
- in another process, the guessed statement's unique violation names its stream (or its
  id), and the rest of the group is guessed again without it, once.

Every caller's answer is the one the ordinary way gives (a duplicate at the stored position,
409 ``idempotency-conflict``), nothing stored twice."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI

from branchline_intake.application.group_commit import KEPT_OUT, GroupCommitter
from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import IntakeContext
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_group_commit import BRANCH, registration
from tests.integration.test_group_commit_event_ids import FIFTH, FOURTH, recorded_committer
from tests.integration.test_group_commit_guessed import (
    OTHER,
    THIRD,
    connected,
    guesses,
    restarted,
    stored,
    together,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def kept_out(reason: str) -> float:
    return float(KEPT_OUT.labels(reason=reason)._value.get())


def guessed_writes(statements: list[str]) -> int:
    """The guessed statements sent (new streams only, or some taken as remembered)."""
    return sum(1 for s in statements if "created AS" in s or "taken AS" in s)


def accepted(answer: list[Outcome] | BaseException, event_id: uuid.UUID) -> Accepted:
    assert isinstance(answer, list), answer
    [outcome] = answer
    assert isinstance(outcome, Accepted), outcome
    assert outcome.position.event_id == event_id
    return outcome


async def test_a_resend_the_process_remembers_goes_the_ordinary_way_the_rest_is_guessed(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """The process accepted a client's registration and remembers its stream ending with it.
    A group then holds that registration resent (same id, same body) and three new ones, one
    of them from the resending branch system itself: the new ones are written by the one
    guessed statement, which is right; the resend is answered as the duplicate it is, at the
    stored position, by the ordinary way. Before: the resend was decided on the guess (D-09,
    a refusal to record), the guess was wrong before any statement, and every caller was
    decided again the ordinary way."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    ids = [uuid.uuid4() for _ in range(4)]
    original = registration(f"C-SA{run}", ids[0])
    async with recorded_committer(ctx, settings) as (committer, statements):
        (first,) = await together(committer, ([original], BRANCH))
        stored_at = accepted(first, ids[0]).position
        written, wrong, remembered = guesses("written"), guesses("wrong"), kept_out("remembered")
        statements.clear()
        again, mine, other, third = await together(
            committer,
            ([original], BRANCH),
            ([registration(f"C-SB{run}", ids[1])], BRANCH),
            ([registration(f"C-SC{run}", ids[2])], OTHER),
            ([registration(f"C-SD{run}", ids[3])], THIRD),
        )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong)
    assert kept_out("remembered") == remembered + 1
    assert guessed_writes(statements) == 1, statements
    assert "created AS" in statements[0]  # the guess first, the resend after it
    assert isinstance(again, list), again
    [same] = again
    assert isinstance(same, Accepted), same
    assert (same.position, same.duplicate) == (stored_at, True)
    for answer, sent in zip((mine, other, third), ids[1:], strict=True):
        assert not accepted(answer, sent).duplicate
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-S{c}{run}") for c in "ABCD"}
    assert [[r["event_id"] for r in rows[c]] for c in "ABCD"] == [[i] for i in ids]
    assert len({r["tx"] for c in "BCD" for r in rows[c]}) == 1


async def test_a_resend_another_process_stored_is_named_and_the_rest_guessed_again(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Another process (it remembers nothing) gets a group with a registration this one
    stored, resent, and two new ones. The guessed statement fails on the resend's stream
    (a unique violation naming it); the two new ones are guessed again without it and
    written by that second statement; the resend is answered the ordinary way: a duplicate
    at the stored position. Before: the whole group was decided again the ordinary way."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    ids = [uuid.uuid4() for _ in range(3)]
    original = registration(f"C-XK{run}", ids[0])
    (first,) = await together(GroupCommitter(ctx, writers=1), ([original], BRANCH))
    stored_at = accepted(first, ids[0]).position
    written, wrong, named = guesses("written"), guesses("wrong"), kept_out("named")
    async with recorded_committer(restarted(app, settings), settings) as (committer, statements):
        again, other, third = await together(
            committer,
            ([original], BRANCH),
            ([registration(f"C-XL{run}", ids[1])], OTHER),
            ([registration(f"C-XM{run}", ids[2])], THIRD),
        )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert kept_out("named") == named + 1
    assert guessed_writes(statements) == 2, statements
    assert isinstance(again, list), again
    [same] = again
    assert isinstance(same, Accepted), same
    assert (same.position, same.duplicate) == (stored_at, True)
    for answer, sent in zip((other, third), ids[1:], strict=True):
        assert not accepted(answer, sent).duplicate
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-X{c}{run}") for c in "KLM"}
    assert [[r["event_id"] for r in rows[c]] for c in "KLM"] == [[i] for i in ids]
    assert len({r["tx"] for c in "LM" for r in rows[c]}) == 1


async def test_a_stored_id_reused_is_named_by_the_statement_and_answered_409(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """In a process that remembers nothing, a caller sends a stored event id with another
    client's registration; the guessed statement fails on ``es_events``' unique event id,
    naming it: that caller is answered 409 ``idempotency-conflict`` the ordinary way, the two
    others are guessed again and written by one statement."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    ids = [uuid.uuid4() for _ in range(3)]
    (first,) = await together(
        GroupCommitter(ctx, writers=1), ([registration(f"C-YK{run}", ids[0])], BRANCH)
    )
    accepted(first, ids[0])
    written, wrong, named = guesses("written"), guesses("wrong"), kept_out("named")
    async with recorded_committer(restarted(app, settings), settings) as (committer, statements):
        reused, other, fifth = await together(
            committer,
            ([registration(f"C-YN{run}", ids[0])], FOURTH),
            ([registration(f"C-YL{run}", ids[1])], OTHER),
            ([registration(f"C-YM{run}", ids[2])], FIFTH),
        )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert kept_out("named") == named + 1
    assert guessed_writes(statements) == 2, statements
    assert isinstance(reused, list), reused
    [conflict] = reused
    assert isinstance(conflict, Refused), conflict
    assert conflict.reason is Refusal.IDEMPOTENCY_CONFLICT
    for answer, sent in zip((other, fifth), ids[1:], strict=True):
        assert not accepted(answer, sent).duplicate
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-Y{c}{run}") for c in "KNLM"}
    assert [r["event_id"] for r in rows["K"]] == [ids[0]]
    assert rows["N"] == []
    assert [[r["event_id"] for r in rows[c]] for c in "LM"] == [[i] for i in ids[1:]]
