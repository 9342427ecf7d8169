"""A refused event's id reused for another event (Round 28, #12; docs/rules.md D-05: the
refusal is itself recorded; docs/api.md: an ``event_id`` reused with other content is 409
``idempotency-conflict``), with real PostgreSQL, on every path.

A refusal by a rule is recorded with the refused submission's hash. Another submission under
the refused event's id is answered 409 ``idempotency-conflict`` naming ``event_id``, as for an
accepted event's id; nothing is stored under it. Until Round 28 the refusal had no hash and
the other event was decided as new (here: accepted). On the guessed path the statement checks
the refusal ids it looked up (taken for not stored) and fails whole when one is stored
(SQLSTATE ``BL002``, intake migration 002): the store names the id, its caller goes the
ordinary way and the rest is guessed again.

Each case also runs against a refusal recorded before Round 28 (no submission hash; Round 29):
another submission under its id, told by what the refusal kept (the refused event with its
personal values redacted, D-04, and its sender), is 409 too; the guessed statement fails on a
hash-less row as well (``BL002``) and its caller goes the ordinary way, which compares. The
same submission resent is decided again, as before."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from branchline_intake.application.group_commit import KEPT_OUT
from branchline_intake.application.outcomes import Outcome, Refusal, Refused
from branchline_intake.application.submit import IntakeContext, refusal_event_id
from branchline_intake.bootstrap import create_app
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
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
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def reused(answer: list[Outcome] | BaseException, event_id: uuid.UUID) -> None:
    assert isinstance(answer, list), answer
    [outcome] = answer
    assert isinstance(outcome, Refused), outcome
    assert outcome.reason is Refusal.IDEMPOTENCY_CONFLICT, outcome
    assert outcome.issues is not None
    assert [(i.field, i.type) for i in outcome.issues] == [("event_id", "conflict")]
    assert str(event_id) in outcome.detail


def named() -> float:
    return float(KEPT_OUT.labels(reason="named")._value.get())


KEPT = ["with its hash", "without a hash (before Round 28)"]


async def as_kept(settings: BranchlineSettings, sent: uuid.UUID, kept: str) -> None:
    """The refusal of ``sent`` as ``kept`` says: left as recorded, or made as recorded before
    Round 28, with no submission hash (the store is append-only: its trigger is set aside for
    this one update)."""
    if kept == KEPT[0]:
        return
    async with connected(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        status = await conn.execute(
            "UPDATE es_events SET submission_hash = NULL WHERE event_id = $1",
            refusal_event_id(sent),
        )
    assert status == "UPDATE 1"


@pytest.mark.parametrize("kept", KEPT)
@pytest.mark.parametrize("where", ["same process", "another process", "the ordinary way"])
async def test_d05_another_event_under_a_refused_events_id_is_answered_as_a_reused_id(
    app: FastAPI, settings: BranchlineSettings, where: str, kept: str
) -> None:
    """A consent refused (D-09: the client never registered) and recorded; then a group of a
    registration of another client under the consent's id and two new registrations. The
    registration is 409 ``idempotency-conflict`` on every path, nothing stored under the id,
    the other two accepted. On the guessed path: one statement refused (``BL002``), one
    question naming the refusal's id, its caller the ordinary way, the other two written by
    a second guessed statement. On main: the registration accepted under the refused id."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    refused_client, other_client, sent = f"C-RA{run}", f"C-RB{run}", uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(2)]
    async with recorded_committer(ctx, settings) as (committer, _):
        await refused_and_recorded(committer, settings, refused_client, sent)
    await as_kept(settings, sent, kept)
    group = (
        ([registration(other_client, sent)], BRANCH),
        ([registration(f"C-RC{run}", ids[0])], OTHER),
        ([registration(f"C-RD{run}", ids[1])], THIRD),
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
    if where == "the ordinary way":
        assert (guesses("written"), guesses("wrong")) == (written, wrong)
    else:
        assert (guesses("written"), guesses("wrong"), named()) == (written + 1, wrong + 1, kept + 1)
        assert (guessed_writes(statements), asked(statements)) == (2, 1), statements
    async with connected(settings) as conn:
        assert await conn.fetchval("SELECT count(*) FROM es_events WHERE event_id = $1", sent) == 0
        assert await events_of(conn, f"client-{other_client}") == []
        refusals = await events_of(conn, f"refusals-{refused_client}")
        assert [r["event_id"] for r in refusals] == [refusal_event_id(sent)]


@pytest.mark.parametrize("kept", KEPT)
@pytest.mark.parametrize("where", ["same process", "another process"])
async def test_d05_the_same_refused_event_resent_on_the_guess_leaves_the_rest_guessed(
    app: FastAPI, settings: BranchlineSettings, where: str, kept: str
) -> None:
    """A refused consent resent (same id, same body) with two new registrations: refused again
    by D-09, recorded once; the new ones accepted. Not a reused id (the same submission)."""
    ctx: IntakeContext = app.state.intake
    run = uuid.uuid4().hex[:6]
    client, sent = f"C-RE{run}", uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(2)]
    async with recorded_committer(ctx, settings) as (committer, _):
        first = await refused_and_recorded(committer, settings, client, sent)
    await as_kept(settings, sent, kept)
    sending = ctx if where == "same process" else restarted(app, settings)
    async with recorded_committer(sending, settings) as (committer, _):
        again, other, third = await together(
            committer,
            ([consent_with(client, sent)], BRANCH),
            ([registration(f"C-RF{run}", ids[0])], OTHER),
            ([registration(f"C-RG{run}", ids[1])], THIRD),
        )
    assert again == [first]
    for answer, new in zip((other, third), ids, strict=True):
        assert not accepted(answer, new).duplicate
    async with connected(settings) as conn:
        refusals = await events_of(conn, f"refusals-{client}")
        assert [r["event_id"] for r in refusals] == [refusal_event_id(sent)]


async def test_d05_a_refused_events_id_reused_over_http_is_409_idempotency_conflict(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    """The same problem+json as for an accepted event's id reused: 409, type
    ``idempotency-conflict``, the field ``event_id``."""
    run = uuid.uuid4().hex[:6]
    sent = uuid.uuid4()
    consent = consent_with(f"C-RH{run}", sent).model_dump(mode="json", exclude_none=True)
    other = registration(f"C-RI{run}", sent).model_dump(mode="json", exclude_none=True)
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=10
        ) as intake,
    ):
        refused = await intake.post("/v1/events", json=consent)
        assert refused.status_code == 409, refused.text
        assert refused.json()["rule"] == "D-09", refused.text
        response = await intake.post("/v1/events", json=other)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/idempotency-conflict"), body
    assert [e["field"] for e in body["errors"]] == ["event_id"], body
