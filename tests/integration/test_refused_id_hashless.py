"""A refusal recorded before Round 28 (no submission hash) and its id sent again, with real
PostgreSQL, on every path (Round 29, #12; docs/rules.md D-05: the refusal is itself recorded;
docs/api.md: an ``event_id`` reused with other content is 409 ``idempotency-conflict``).

Another submission under the refused event's id, told by what the refusal kept (the refused
event with its personal values redacted, D-04, and its sender), is 409 naming ``event_id``;
nothing is stored under the id. Until Round 29 it was decided as new (here: accepted), on
the guessed path as on the ordinary way: the guessed statement let a hash-less row pass. It
now fails on one (``BL002``), its caller goes the ordinary way, which compares, and the rest
is guessed again. The same submission resent is decided again, as before."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI

from branchline_intake.application.submit import IntakeContext, refusal_event_id
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_group_commit import BRANCH, registration
from tests.integration.test_group_commit_event_ids import recorded_committer
from tests.integration.test_group_commit_guessed import (
    OTHER,
    THIRD,
    connected,
    guesses,
    ordinary,
    restarted,
    together,
)
from tests.integration.test_group_commit_refused_resends import (
    consent_with,
    events_of,
    refused_and_recorded,
)
from tests.integration.test_group_commit_resends import accepted, asked, guessed_writes
from tests.integration.test_refused_id_reused import named, reused

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def hash_dropped(settings: BranchlineSettings, sent: uuid.UUID) -> None:
    """The refusal of ``sent`` made as recorded before Round 28: no submission hash (the
    store is append-only: its trigger is set aside for this one update)."""
    async with connected(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        status = await conn.execute(
            "UPDATE es_events SET submission_hash = NULL WHERE event_id = $1",
            refusal_event_id(sent),
        )
    assert status == "UPDATE 1"


@pytest.mark.parametrize("where", ["same process", "another process", "the ordinary way"])
async def test_d05_another_event_under_a_hashless_refusals_id_is_answered_as_a_reused_id(
    app: FastAPI, settings: BranchlineSettings, where: str
) -> None:
    """A consent refused (D-09) and recorded without a hash; then a group of a registration of
    another client under the consent's id and two new registrations: the registration 409,
    nothing stored under the id, the other two accepted. On the guess: one statement refused
    (``BL002``), one question, its caller the ordinary way, a second guessed statement for
    the other two. Until Round 29: the registration accepted under the refused id."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    refused_client, other_client, sent = f"C-HA{run}", f"C-HB{run}", uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(2)]
    async with recorded_committer(ctx, settings) as (committer, _):
        await refused_and_recorded(committer, settings, refused_client, sent)
    await hash_dropped(settings, sent)
    group = (
        ([registration(other_client, sent)], BRANCH),
        ([registration(f"C-HC{run}", ids[0])], OTHER),
        ([registration(f"C-HD{run}", ids[1])], THIRD),
    )
    written, wrong, kept = guesses("written"), guesses("wrong"), named()
    if where == "the ordinary way":
        answers = await together(
            ordinary(restarted(app, settings), writers=1, window_s=0.1), *group
        )
        statements: list[str] = []
    else:
        sending = ctx if where == "same process" else restarted(app, settings)
        async with recorded_committer(sending, settings) as (committer, statements):
            answers = await together(committer, *group)
    again, other, third = answers
    reused(again, sent)
    for answer, new in zip((other, third), ids, strict=True):
        assert not accepted(answer, new).duplicate
    if where != "the ordinary way":
        assert (guesses("written"), guesses("wrong"), named()) == (written + 1, wrong + 1, kept + 1)
        assert (guessed_writes(statements), asked(statements)) == (2, 1), statements
    async with connected(settings) as conn:
        assert await conn.fetchval("SELECT count(*) FROM es_events WHERE event_id = $1", sent) == 0
        assert await events_of(conn, f"client-{other_client}") == []
        refusals = await events_of(conn, f"refusals-{refused_client}")
        assert [r["event_id"] for r in refusals] == [refusal_event_id(sent)]


@pytest.mark.parametrize("where", ["same process", "another process"])
async def test_d05_the_same_event_under_a_hashless_refusals_id_is_decided_again(
    app: FastAPI, settings: BranchlineSettings, where: str
) -> None:
    """Guard: the same consent resent under its hash-less refusal's id, with two new
    registrations on the guess: refused again by D-09, recorded once; the new ones accepted."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client, sent = f"C-HE{run}", uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(2)]
    async with recorded_committer(ctx, settings) as (committer, _):
        first = await refused_and_recorded(committer, settings, client, sent)
    await hash_dropped(settings, sent)
    sending = ctx if where == "same process" else restarted(app, settings)
    async with recorded_committer(sending, settings) as (committer, _):
        again, other, third = await together(
            committer,
            ([consent_with(client, sent)], BRANCH),
            ([registration(f"C-HF{run}", ids[0])], OTHER),
            ([registration(f"C-HG{run}", ids[1])], THIRD),
        )
    assert again == [first]
    for answer, new in zip((other, third), ids, strict=True):
        assert not accepted(answer, new).duplicate
    async with connected(settings) as conn:
        refusals = await events_of(conn, f"refusals-{client}")
        assert [r["event_id"] for r in refusals] == [refusal_event_id(sent)]
