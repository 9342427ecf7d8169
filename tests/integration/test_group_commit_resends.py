"""A guessed group that holds a resend (Round 26, #12, docs/intake.md, "Group commit with the
callers' own event ids"): since Round 25 the callers' own event ids take the one
self-committing statement, and one resent id made the whole group's guess wrong, every
caller decided again the ordinary way. Now the resend alone goes the ordinary way:

- in the process that remembers its stream ending with the very id it sends, it is kept out
  of the guess before any statement (its decision on the guess would refuse it: D-09);
- in another process, the guessed statement's unique violation names its stream (or its
  id), and the rest of the group is guessed again without it, once.

Since Round 27 the store, after the refused statement, asks in one statement which of the
group's event ids are stored and which of its streams stand otherwise than guessed, and every
caller that holds one goes the ordinary way: two resends, a stale remembered stream, a server
that words its refusals in another language, all leave the rest guessed.

Every caller's answer is the one the ordinary way gives (a duplicate at the stored position,
409 ``idempotency-conflict``), nothing stored twice."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from branchline_intake.application.group_commit import KEPT_OUT, GroupCommitter
from branchline_intake.application.history_tail import TailLoadingStore
from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import IntakeContext
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_group_commit import BRANCH, registration
from tests.integration.test_group_commit_event_ids import FIFTH, FOURTH, recorded_committer
from tests.integration.test_group_commit_guessed import (
    OTHER,
    THIRD,
    connected,
    consent,
    guesses,
    ordinary,
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


def asked(statements: list[str]) -> int:
    """The store's questions after a refused guessed statement (Round 27)."""
    return sum(1 for s in statements if "AS g(stream_id, version, last_id)" in s)


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


def duplicate_of(answer: list[Outcome] | BaseException, stored_at: Any) -> None:
    assert isinstance(answer, list), answer
    [same] = answer
    assert isinstance(same, Accepted), same
    assert (same.position, same.duplicate) == (stored_at, True)


async def test_two_resends_another_process_stored_leave_the_guess_together(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Another process (it remembers nothing) gets a group with two registrations this one
    stored, resent by two branch systems, and two new ones. The guessed statement fails (the
    server names one key); the store then names both resends' streams and ids in one
    question, both go the ordinary way (duplicates at their stored positions), and the two
    new ones are written by one statement guessed again. Round 26: the re-guess without the
    one key named failed on the other, and the whole group went the ordinary way."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    ids = [uuid.uuid4() for _ in range(4)]
    one, two = registration(f"C-WA{run}", ids[0]), registration(f"C-WB{run}", ids[1])
    first, second = await together(
        GroupCommitter(ctx, writers=1, window_s=0.05), ([one], BRANCH), ([two], OTHER)
    )
    stored_at = [accepted(first, ids[0]).position, accepted(second, ids[1]).position]
    written, wrong, named = guesses("written"), guesses("wrong"), kept_out("named")
    async with recorded_committer(restarted(app, settings), settings) as (committer, statements):
        again_one, again_two, third, fourth = await together(
            committer,
            ([one], BRANCH),
            ([two], OTHER),
            ([registration(f"C-WC{run}", ids[2])], THIRD),
            ([registration(f"C-WD{run}", ids[3])], FOURTH),
        )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert kept_out("named") == named + 2
    assert (guessed_writes(statements), asked(statements)) == (2, 1), statements
    duplicate_of(again_one, stored_at[0])
    duplicate_of(again_two, stored_at[1])
    for answer, sent in zip((third, fourth), ids[2:], strict=True):
        assert not accepted(answer, sent).duplicate
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-W{c}{run}") for c in "ABCD"}
    assert [[r["event_id"] for r in rows[c]] for c in "ABCD"] == [[i] for i in ids]
    assert len({r["tx"] for c in "CD" for r in rows[c]}) == 1


async def test_a_stale_remembered_stream_leaves_the_guess_alone(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """This process remembers a client at version 1; another process writes its consent (2).
    A group then holds this client's consent and two new registrations: the guessed
    statement fails with the stale guess's ``BL001``, which names no stream; the store then
    names the client's stream (not at its remembered version), its caller goes the ordinary
    way (accepted at 3, decided on what is stored), and the two new ones are written by one
    statement guessed again. Round 26: the whole group went the ordinary way."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client = f"C-VS{run}"
    ids = [uuid.uuid4() for _ in range(2)]
    async with recorded_committer(ctx, settings) as (committer, statements):
        (first,) = await together(committer, ([registration(client)], BRANCH))
        assert isinstance(first, list), first
        assert isinstance(first[0], Accepted), first
        (elsewhere,) = await ordinary(restarted(app, settings)).submit(
            [consent(client)], submitted_by=BRANCH
        )
        assert isinstance(elsewhere, Accepted)
        assert elsewhere.position.stream_version == 2
        written, wrong, named = guesses("written"), guesses("wrong"), kept_out("named")
        statements.clear()
        stale, other, third = await together(
            committer,
            ([consent(client)], BRANCH),
            ([registration(f"C-VT{run}", ids[0])], OTHER),
            ([registration(f"C-VU{run}", ids[1])], THIRD),
        )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert kept_out("named") == named + 1
    assert (guessed_writes(statements), asked(statements)) == (2, 1), statements
    assert isinstance(stale, list), stale
    [three] = stale
    assert isinstance(three, Accepted), three
    assert three.position.stream_version == 3
    for answer, sent in zip((other, third), ids, strict=True):
        assert not accepted(answer, sent).duplicate
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-V{c}{run}") for c in "STU"}
    assert [(r["stream_version"], r["stream_at"]) for r in rows["S"]] == [(v, 3) for v in (1, 2, 3)]
    assert len({r["tx"] for c in "TU" for r in rows[c]}) == 1
    assert rows["S"][2]["tx"] not in {rows["T"][0]["tx"]}


class _RewordingPool:
    """The store's pool as a server whose ``lc_messages`` is another language would answer:
    every unique violation's ``detail`` worded otherwise (no locale here but C)."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            yield _RewordingConn(conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class _RewordingConn:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, query: str, *args: Any) -> Any:
        try:
            return await self._conn.fetch(query, *args)
        except asyncpg.UniqueViolationError as exc:
            exc.detail = "Schlüssel existiert bereits."
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_a_refusal_worded_in_another_language_still_names_the_resend(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """Another process gets a group with a stored registration resent and two new ones, on
    a server that words its refusals otherwise than in English: the store's question after
    the refusal names the resend all the same, it is answered a duplicate the ordinary way,
    and the two new ones are written by one statement guessed again. Round 26 compared the
    English detail with the keys sent: nothing named, the whole group the ordinary way."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    ids = [uuid.uuid4() for _ in range(3)]
    original = registration(f"C-LK{run}", ids[0])
    (first,) = await together(GroupCommitter(ctx, writers=1), ([original], BRANCH))
    stored_at = accepted(first, ids[0]).position
    other_process = restarted(app, settings)
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
    try:
        store = TailLoadingStore(
            PostgresEventStore(_RewordingPool(pool)),  # type: ignore[arg-type]
            other_process.decider,
        )
        committer = GroupCommitter(
            dataclasses.replace(other_process, store=store), writers=1, window_s=0.1
        )
        written, wrong, named = guesses("written"), guesses("wrong"), kept_out("named")
        again, other, third = await together(
            committer,
            ([original], BRANCH),
            ([registration(f"C-LL{run}", ids[1])], OTHER),
            ([registration(f"C-LM{run}", ids[2])], THIRD),
        )
    finally:
        await pool.close()
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert kept_out("named") == named + 1
    duplicate_of(again, stored_at)
    for answer, sent in zip((other, third), ids[1:], strict=True):
        assert not accepted(answer, sent).duplicate
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-L{c}{run}") for c in "KLM"}
    assert [[r["event_id"] for r in rows[c]] for c in "KLM"] == [[i] for i in ids]
    assert len({r["tx"] for c in "LM" for r in rows[c]}) == 1


async def test_a_resend_of_an_earlier_event_the_process_remembers_goes_the_ordinary_way(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """The process accepted a client's registration, then its consent: it remembers the
    stream ending with the consent. A group then holds the registration resent (same id,
    same body; no longer the stream's last event) and two new registrations: the resend is
    kept out of the guess before any statement (the decider keeps a remembered stream's
    latest ids, Round 27), the two new ones are written by the one guessed statement, and
    the resend is answered the duplicate it is. Round 26 kept out only a resend of the last
    event: this one was decided on the guess (D-09, a refusal to record, which no statement
    checks), and the whole group went the ordinary way."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client = f"C-EA{run}"
    ids = [uuid.uuid4() for _ in range(3)]
    original = registration(client, ids[0])
    async with recorded_committer(ctx, settings) as (committer, statements):
        (first,) = await together(committer, ([original], BRANCH))
        stored_at = accepted(first, ids[0]).position
        (granted,) = await together(committer, ([consent(client)], BRANCH))
        assert isinstance(granted, list), granted
        assert isinstance(granted[0], Accepted), granted
        written, wrong, remembered = guesses("written"), guesses("wrong"), kept_out("remembered")
        statements.clear()
        again, other, third = await together(
            committer,
            ([original], BRANCH),
            ([registration(f"C-EB{run}", ids[1])], OTHER),
            ([registration(f"C-EC{run}", ids[2])], THIRD),
        )
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong)
    assert kept_out("remembered") == remembered + 1
    assert (guessed_writes(statements), asked(statements)) == (1, 0), statements
    duplicate_of(again, stored_at)
    for answer, sent in zip((other, third), ids[1:], strict=True):
        assert not accepted(answer, sent).duplicate
    async with connected(settings) as conn:
        rows = {c: await stored(conn, f"client-C-E{c}{run}") for c in "ABC"}
    assert [r["event_id"] for r in rows["A"]][:1] == [ids[0]]
    assert len(rows["A"]) == 2
    assert [[r["event_id"] for r in rows[c]] for c in "BC"] == [[i] for i in ids[1:]]
    assert len({r["tx"] for c in "BC" for r in rows[c]}) == 1
