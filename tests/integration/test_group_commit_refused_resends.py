"""A resend whose original was refused by a rule and recorded (under ``refusal_event_id``), on
the guessed path (Round 27, #12, docs/intake.md, "Group commit with the callers' own event
ids"). The guessed statement sends no refusal id, so nothing in it is refused on one; these
tests show that each such resend is answered as the ordinary way answers it, which decides
the resent event again on what is stored and records its refusal once:

- (a) resent in the process that refused it, nothing changed: refused again by the same rule
  (on the guess a refusal to record, which no statement checks: since Round 28 its caller
  alone goes the ordinary way, where the recorded refusal's id is found and not written
  again, and the rest of the group is guessed again, D-09);
- (b) resent through another process (a memory without it): the same;
- (c) resent after the stream changed so the rule now passes (the client registered since):
  accepted, on the guessed path (its own process, by the one statement; another process,
  where the consent is refused on the guess of a new stream, the ordinary way) as on the
  ordinary way; the refusal stays recorded once;
- and the reverse: an event accepted, resent when its decision would now refuse it (a
  registration, D-09), older than the latest ids its process remembers of the stream: a
  duplicate at the stored place, no refusal recorded.

No path answers otherwise than the ordinary way (Round 27: none of these failed on main's
code, they guard it). Round 28 (#12): a refusal decided on the guess names its refusal
stream, so only its caller leaves the guess; the counts of (a) and of (c) "another process"
changed with it (one guessed statement for the others instead of none), and those cases
fail on the code before it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.application.outcomes import Accepted, Outcome, Refusal, Refused
from branchline_intake.application.submit import (
    IntakeContext,
    refusal_event_id,
    refusal_stream_id,
)
from branchline_shared.events.envelope import SubmittedEvent
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_group_commit import BRANCH, registration
from tests.integration.test_group_commit_event_ids import recorded_committer
from tests.integration.test_group_commit_guessed import (
    OTHER,
    THIRD,
    connected,
    consent,
    guesses,
    ordinary,
    restarted,
    together,
)
from tests.integration.test_group_commit_resends import (
    accepted,
    duplicate_of,
    guessed_writes,
    kept_out,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def consent_with(client_id: str, event_id: uuid.UUID) -> SubmittedEvent:
    return consent(client_id).model_copy(update={"event_id": event_id})


def refused_by(answer: list[Outcome] | BaseException, rule: str, event_id: uuid.UUID) -> Refused:
    assert isinstance(answer, list), answer
    [outcome] = answer
    assert isinstance(outcome, Refused), outcome
    assert (outcome.reason, outcome.rule, outcome.event_id) == (
        Refusal.RULE_VIOLATION,
        rule,
        event_id,
    )
    return outcome


async def events_of(conn: asyncpg.Connection[Any], stream_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT event_id, type, stream_version, tx_id::text AS tx "
            "FROM es_events WHERE stream_id = $1 ORDER BY stream_version",
            stream_id,
        )
    )


async def refused_and_recorded(
    committer: GroupCommitter, settings: BranchlineSettings, client: str, event_id: uuid.UUID
) -> Refused:
    """A consent for a client never registered, sent alone: refused (D-09), its refusal
    recorded once under the id derived from the consent's."""
    (first,) = await together(committer, ([consent_with(client, event_id)], BRANCH))
    refusal = refused_by(first, "D-09", event_id)
    async with connected(settings) as conn:
        rows = await events_of(conn, refusal_stream_id(consent(client)))
    assert [r["event_id"] for r in rows] == [refusal_event_id(event_id)]
    return refusal


async def recorded_once(settings: BranchlineSettings, client: str, event_id: uuid.UUID) -> None:
    async with connected(settings) as conn:
        rows = await events_of(conn, refusal_stream_id(consent(client)))
        assert [r["event_id"] for r in rows] == [refusal_event_id(event_id)]
        assert await conn.fetchval(
            "SELECT count(*) FROM es_events WHERE event_id = $1", event_id
        ) in (
            0,
            1,
        )


@pytest.mark.parametrize("where", ["same process", "another process"])
async def test_a_refused_event_resent_is_refused_again_and_recorded_once(
    app: FastAPI, settings: BranchlineSettings, where: str
) -> None:
    """(a), (b): a consent refused (D-09: the client was never registered) and recorded, then
    resent (same id, same body) in a group with two new registrations, in the process that
    refused it or in another one. The resend is refused again by the same rule, as the
    ordinary way refuses it (the decision on what is stored), its refusal not recorded a
    second time; the client's stream stays empty and the new ones are stored. What the
    guessed path does: the decision on the guess refuses it, a refusal to record (no
    statement checks it), so nothing is sent; since Round 28 the refusal's stream is named
    and only the resend's caller runs the ordinary way: the two new ones are guessed again,
    one statement, their own transaction, committed before the resend is decided (D-09)."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client, sent = f"C-QA{run}", uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(2)]
    async with recorded_committer(ctx, settings) as (committer, _):
        first = await refused_and_recorded(committer, settings, client, sent)
    resending = ctx if where == "same process" else restarted(app, settings)
    written, wrong, refusal = guesses("written"), guesses("wrong"), kept_out("refusal")
    async with recorded_committer(resending, settings) as (committer, statements):
        again, other, third = await together(
            committer,
            ([consent_with(client, sent)], BRANCH),
            ([registration(f"C-QB{run}", ids[0])], OTHER),
            ([registration(f"C-QC{run}", ids[1])], THIRD),
        )
    assert refused_by(again, "D-09", sent) == first
    for answer, new in zip((other, third), ids, strict=True):
        assert not accepted(answer, new).duplicate
    # Round 28: refused on the guess (nothing sent), its caller alone kept out, the two new
    # ones guessed again in one statement; Round 27 counted (written, wrong + 1) and 0.
    assert (guesses("written"), guesses("wrong")) == (written + 1, wrong + 1)
    assert kept_out("refusal") == refusal + 1
    assert guessed_writes(statements) == 1, statements
    await recorded_once(settings, client, sent)
    async with connected(settings) as conn:
        assert await events_of(conn, f"client-{client}") == []
        news = [await events_of(conn, f"client-C-Q{c}{run}") for c in "BC"]
    assert len({r["tx"] for n in news for r in n}) == 1  # one guessed statement, both


@pytest.mark.parametrize("where", ["same process", "another process", "the ordinary way"])
async def test_a_refused_event_resent_once_the_rule_passes_is_accepted_as_the_ordinary_way_does(
    app: FastAPI, settings: BranchlineSettings, where: str
) -> None:
    """(c): a consent refused (D-09) and recorded; the client then registered (accepted); the
    consent resent (same id, same body) in a group with two new registrations. The ordinary
    way decides it again on what is stored, where the rule now passes: accepted, at version
    2, its refusal not recorded again (the recorded refusal keeps a resend from being
    recorded twice, it does not answer it). The guessed path answers the same: in the
    process that remembers the registered stream, by the one guessed statement with the new
    ones; in another process (the registered stream taken for new, so the consent refused on
    the guess, a refusal to record: nothing sent), the whole group the ordinary way."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client, sent = f"C-QR{run}", uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(3)]
    async with recorded_committer(ctx, settings) as (committer, _):
        first = await refused_and_recorded(committer, settings, client, sent)
        (registered,) = await together(committer, ([registration(client, ids[0])], BRANCH))
        accepted(registered, ids[0])
    resending = {
        "same process": lambda: GroupCommitter(ctx, writers=1, window_s=0.1),
        "another process": lambda: GroupCommitter(
            restarted(app, settings), writers=1, window_s=0.1
        ),
        "the ordinary way": lambda: ordinary(restarted(app, settings), writers=1, window_s=0.1),
    }[where]()
    written, wrong = guesses("written"), guesses("wrong")
    again, other, third = await together(
        resending,
        ([consent_with(client, sent)], BRANCH),
        ([registration(f"C-QS{run}", ids[1])], OTHER),
        ([registration(f"C-QT{run}", ids[2])], THIRD),
    )
    now = accepted(again, sent)
    assert (now.duplicate, now.position.stream_version) == (False, 2)
    assert first.event_id == sent
    for answer, new in zip((other, third), ids[1:], strict=True):
        assert not accepted(answer, new).duplicate
    expected = {
        "same process": (written + 1, wrong),  # the consent with the new ones, one statement
        # taken for new, the consent is refused on the guess (D-09): a refusal to record,
        # nothing sent; since Round 28 its caller alone the ordinary way, the new ones
        # guessed again in one statement (Round 27: (written, wrong + 1))
        "another process": (written + 1, wrong + 1),
        "the ordinary way": (written, wrong),
    }[where]
    assert (guesses("written"), guesses("wrong")) == expected
    await recorded_once(settings, client, sent)
    async with connected(settings) as conn:
        rows = await events_of(conn, f"client-{client}")
        assert [(r["event_id"], r["stream_version"]) for r in rows] == [(ids[0], 1), (sent, 2)]
        news = [await events_of(conn, f"client-C-Q{c}{run}") for c in "ST"]
    if where == "same process":
        assert {rows[1]["tx"]} == {r["tx"] for n in news for r in n}
    elif where == "another process":  # the new ones in one guessed statement, not its
        assert len({r["tx"] for n in news for r in n} - {rows[1]["tx"]}) == 1


async def test_an_accepted_event_resent_when_its_rule_would_refuse_it_is_a_duplicate(
    app: FastAPI, settings: BranchlineSettings
) -> None:
    """The reverse: a registration accepted, then nine consents, so the process remembers
    the stream but no longer the registration among its latest 8 ids; the registration
    resent (same id, same body) in a group with two new ones. Decided again it would be
    refused (D-09: registering twice), a refusal to record on the guess, so the group goes
    the ordinary way, where the stored id answers it: a duplicate at the stored place, no
    refusal recorded, the new ones stored."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client, sent = f"C-QV{run}", uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(2)]
    original = registration(client, sent)
    async with recorded_committer(ctx, settings) as (committer, _):
        (first,) = await together(committer, ([original], BRANCH))
        stored_at = accepted(first, sent).position
        for _ in range(9):
            (granted,) = await together(committer, ([consent(client)], BRANCH))
            assert isinstance(granted, list), granted
            assert isinstance(granted[0], Accepted), granted
        again, other, third = await together(
            committer,
            ([original], BRANCH),
            ([registration(f"C-QW{run}", ids[0])], OTHER),
            ([registration(f"C-QX{run}", ids[1])], THIRD),
        )
    duplicate_of(again, stored_at)
    for answer, new in zip((other, third), ids, strict=True):
        assert not accepted(answer, new).duplicate
    async with connected(settings) as conn:
        assert await events_of(conn, refusal_stream_id(original)) == []
        assert len(await events_of(conn, f"client-{client}")) == 10
