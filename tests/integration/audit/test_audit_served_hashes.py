"""Every reader of the ledger recomputes each entry's hash from its stored columns before it
serves it (tamper evidence, D-11, #12): an entry altered behind the ledger's back to a
plausible value (a time in year 5 or a day later, another event body or type) is refused by
name as the altered entry it is, as one holding a time no append writes is
(test_audit_unwritten_times.py): a page of the API or the console, the entry, its proof, an
export (ended with the signed incomplete trailer once started), retention's candidates. Before,
only verify reported it; the readers served it as it was."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.pruning import prune_expired
from branchline_audit.bootstrap import create_app, retention_policy
from branchline_audit.domain.export import bytes_lines, verify_export
from branchline_audit.domain.note import Verifier
from branchline_audit.domain.relationships import hold_placed_event
from branchline_audit.domain.retention import RetentionError
from branchline_shared.clock import FixedClock
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import (
    T0,
    AuditorTrail,
    audit_context,
    behind_the_ledgers_back,
    event,
    lifecycle_event,
    names_the_entry,
    positions,
    quick_settings,
)
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OLD = T0 - timedelta(days=365 * 11)
ENTRY = 2
"""A plain entry of C-1 (``data.note`` ``n2``), appended eleven years ago: its client's
relationship ended then (position 3), so it is due for pruning, as are positions 1 and 4."""
CLOSURE = 3
HOLD = 13
"""A legal hold of C-5, after the read its placing recorded (D-11)."""

_BYTES = "convert_from(canonical, 'UTF8')"

ALTERATIONS: dict[str, tuple[str, str]] = {
    # name: (the UPDATE's SET clause, what the refusal names)
    "appended_at in year 5": (
        "appended_at = '0005-06-01 09:00:00+00'",
        "column appended_at does not match",
    ),
    "appended_at a day later": (
        "appended_at = appended_at + interval '1 day'",
        "column appended_at does not match",
    ),
    "occurred_at in year 5": (
        "occurred_at = '0005-06-01 09:00:00+00'",
        "column occurred_at does not match",
    ),
    "occurred_at a day later": (
        "occurred_at = occurred_at + interval '1 day'",
        "column occurred_at does not match",
    ),
    "a field of the body": (
        f"""canonical = convert_to(replace({_BYTES}, '"note":"n2"', '"note":"n7"'), 'UTF8')""",
        "hash does not match",
    ),
    "the type column": (
        "event_type = 'complaint.received'",
        "column event_type does not match",
    ),
    "the type in the body and its column": (
        f'canonical = convert_to(replace({_BYTES}, \'"type":"visit.arrived"\', '
        "'\"type\":\"complaint.received\"'), 'UTF8'), event_type = 'complaint.received'",
        "hash does not match",
    ),
}


@dataclass
class Trail(AuditorTrail):
    key: Verifier


@pytest.fixture
async def trail(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[Trail]:
    s = quick_settings(settings)
    async with (
        serve(create_app(s)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        audit_context(s, clock=FixedClock(T0)) as audit,
    ):
        closed = lifecycle_event(40, "client.account_closed", client_id="C-1", at=OLD)
        await audit.ledger.append([event(1), event(2), closed, event(3)], now=OLD)  # 1..4
        await audit.ledger.append([event(n, client_id="C-2") for n in range(4, 10)], now=T0)
        await checkpoint_now(audit)  # signs 1..10
        answer = await client.get(
            "/v1/audit/public-key", headers=tokens.headers(Role.AUDITOR, sub="auditor-1")
        )
        key = Verifier.from_verifier_key(answer.json()["verifier_key"])
        placed = await client.post(
            "/v1/audit/legal-holds",
            json={"client_id": "C-5", "hold_id": "LH-1", "reason": "regulatory_investigation"},
            headers=tokens.headers(Role.AUDITOR, sub="auditor-1"),
        )
        assert placed.json()["position"] == HOLD, placed.text
        yield Trail(client, audit, s, tokens, key)


async def _alter(settings: BranchlineSettings, assignment: str, position: int) -> None:
    await behind_the_ledgers_back(
        settings,
        f"UPDATE audit_ledger SET {assignment} WHERE position = $1",  # the test's own text
        position,
    )


def _ended_incomplete(
    trail: Trail, response: httpx.Response, position: int, names: str, *, sent: int = 0
) -> None:
    """A started export ended by the signed incomplete trailer naming the entry (D-11), after
    the ``sent`` entries before it (every sound line before it is sent, #12)."""
    assert response.status_code == 200, response.text
    verdict = verify_export(bytes_lines(response.content), trail.key)
    assert not verdict.ok, verdict
    assert verdict.incomplete, verdict
    assert verdict.entries == sent, verdict
    assert "D-11" in (verdict.reason or ""), verdict
    assert f"position {position} was altered" in (verdict.reason or ""), verdict
    assert names in (verdict.reason or ""), verdict


@pytest.mark.parametrize("alteration", list(ALTERATIONS))
async def test_every_reader_refuses_an_entry_altered_to_a_plausible_value(
    trail: Trail, alteration: str
) -> None:
    assignment, names = ALTERATIONS[alteration]
    await _alter(trail.settings, assignment, ENTRY)
    verdict = (await trail.get("/v1/audit/verify")).json()
    assert verdict["bad_positions"] == [ENTRY], verdict

    # A page holding it is refused by name; the pages around it are served.
    names_the_entry(await trail.get("/v1/audit/entries"), ENTRY, names)
    names_the_entry(await trail.get("/v1/audit/entries", client_id="C-1"), ENTRY, names)
    assert positions(await trail.get("/v1/audit/entries", limit=1)) == [1]
    assert positions(await trail.get("/v1/audit/entries", cursor=str(ENTRY)))[:2] == [3, 4]

    # Its proof is refused; another's is given.
    names_the_entry(await trail.get(f"/v1/audit/entries/{ENTRY}/proof"), ENTRY, names)
    assert (await trail.get("/v1/audit/entries/5/proof")).status_code == 200

    # An export holding it ends with the signed incomplete trailer naming it (the check
    # before the export reads only times no append writes); one without it is served whole.
    for params in ({}, {"client_id": "C-1"}, {"format": "csv"}):
        export = await trail.get("/v1/audit/export", purpose="review", **params)
        # Position 1, sound, is sent before it: the page holding it is not refused whole.
        _ended_incomplete(trail, export, ENTRY, names, sent=ENTRY - 1)
    other = await trail.get("/v1/audit/export", purpose="review", client_id="C-2")
    assert verify_export(bytes_lines(other.content), trail.key).ok

    # The console's pages say so, for that entry only.
    for path in ("/console/trail", f"/console/entries/{ENTRY}"):
        page = await trail.page(path, purpose="review")
        assert page.status_code == 409, (path, page.text)
        assert f"position {ENTRY} was altered" in page.text
        assert "D-11" in page.text
    assert (await trail.page("/console/trail", purpose="review", cursor=ENTRY)).status_code == 200
    assert (await trail.page("/console/entries/5", purpose="review")).status_code == 200


@pytest.mark.parametrize("alteration", list(ALTERATIONS))
async def test_pruning_skips_an_entry_altered_to_a_plausible_value_by_name(
    trail: Trail, alteration: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Retention decides by an entry's columns (its client, branch, append time) and writes a
    marker of its event: an altered one is neither decided on nor pruned."""
    assignment, names = ALTERATIONS[alteration]
    await _alter(trail.settings, assignment, ENTRY)
    s = trail.settings
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        with caplog.at_level(logging.WARNING):
            outcome = await prune_expired(
                pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="ops-1"
            )
    assert outcome.ranges == [[1, 1], [3, 4]], outcome
    assert list(outcome.altered_skipped) == [ENTRY], outcome
    assert names in outcome.altered_skipped[ENTRY]
    assert f"position {ENTRY} was altered" in caplog.text
    verdict = (await trail.get("/v1/audit/verify")).json()
    assert verdict["bad_positions"] == [ENTRY], verdict  # the prune's own work verifies


async def test_a_reader_holding_consecutive_entries_checks_their_link(
    trail: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry whose body was rewritten with its own hash recomputed holds alone; the entry
    after it no longer links to it, and every reader names that one, as verify does: one
    holding both, and (#12) one holding either alone, first or last on its page, which reads
    the link beside it."""
    await _alter(
        trail.settings,
        f"""canonical = convert_to(replace({_BYTES}, '"note":"n2"', '"note":"n7"'), 'UTF8'), """
        f"""hash = sha256(prev_hash || convert_to(replace({_BYTES}, '"note":"n2"', """
        """'"note":"n7"'), 'UTF8'))""",
        ENTRY,
    )
    verdict = (await trail.get("/v1/audit/verify")).json()
    assert verdict["first_bad_position"] == ENTRY + 1, verdict
    names = f"prev_hash does not equal the hash of position {ENTRY}"
    names_the_entry(await trail.get("/v1/audit/entries"), ENTRY + 1, names)
    # The page starting after it reads the link before its first entry (#12).
    names_the_entry(await trail.get("/v1/audit/entries", cursor=str(ENTRY)), ENTRY + 1, names)
    # A complete export links across its pages (the first page holds 20 entries: 2 here),
    # and reads the link after a page's last: the rewritten entry is not sent (#12).
    from branchline_audit.application import exporting

    monkeypatch.setattr(exporting, "FIRST_PAGE_SIZE", ENTRY)
    export = await trail.get("/v1/audit/export", purpose="review")
    _ended_incomplete(trail, export, ENTRY + 1, names, sent=ENTRY - 1)


async def test_an_entry_rewritten_with_its_hash_is_refused_alone_or_at_a_pages_edge(
    trail: Trail,
) -> None:
    """The reads Round 26 left unlinked (#12): the rewritten entry served alone (the API's and
    the console's entry), last on its page, by a filtered read (its neighbours not in it);
    the entries beside it are still served where their own links hold."""
    await _alter(
        trail.settings,
        f"""canonical = convert_to(replace({_BYTES}, '"note":"n2"', '"note":"n7"'), 'UTF8'), """
        f"""hash = sha256(prev_hash || convert_to(replace({_BYTES}, '"note":"n2"', """
        """'"note":"n7"'), 'UTF8'))""",
        ENTRY,
    )
    names = f"prev_hash does not equal the hash of position {ENTRY}"
    # Alone: its proof (the stored path is the rewritten hash's, so the signed root may
    # refuse it too: the link is checked first) and the console's entry page.
    names_the_entry(await trail.get(f"/v1/audit/entries/{ENTRY}/proof"), ENTRY + 1, names)
    for alone in (ENTRY, ENTRY + 1):
        page = await trail.page(f"/console/entries/{alone}", purpose="review")
        assert page.status_code == 409, page.text
        assert f"position {ENTRY + 1} was altered" in page.text
    # Last on its page: the page of 1..2 reads position 3's prev_hash.
    names_the_entry(await trail.get("/v1/audit/entries", limit=ENTRY), ENTRY + 1, names)
    # The entries beside it hold by their own links, but the checkpoint covering them (10)
    # cannot be proven over the rewritten hash in its range: refused naming it (Round 28,
    # test_audit_signed_reads.py). Before, position 1 alone and 4..5 were served.
    signed = "is not what the signed checkpoint of tree size 10"
    names_the_entry(await trail.get("/v1/audit/entries", limit=ENTRY - 1), 10, signed)
    names_the_entry(
        await trail.get("/v1/audit/entries", cursor=str(ENTRY + 1), limit=2), 10, signed
    )
    # A filtered read holding it without its neighbours (by type: 2 and 4 of the visits
    # around the closure at 3, which is another type).
    names_the_entry(
        await trail.get("/v1/audit/entries", client_id="C-1", type="visit.arrived"),
        ENTRY + 1,
        names,
    )
    for sound in (1, 4):  # served before Round 28; now its range's checkpoint refuses them
        page = await trail.page(f"/console/entries/{sound}", purpose="review")
        assert page.status_code == 409, page.text
        assert "position 10 was altered" in page.text


async def test_a_hold_whose_client_column_was_altered_is_refused_not_missed(
    trail: Trail,
) -> None:
    """The facts were selected by their client_id column: a hold altered to another client,
    or to none, was not listed for its client (or at all), and a prune of that client went
    ahead. Now every client's facts of the type are read and checked (#12)."""
    s = trail.settings
    names = "column client_id does not match"
    await _alter(s, "client_id = 'C-9'", HOLD)
    names_the_entry(await trail.get("/v1/audit/legal-holds", client_id="C-5"), HOLD, names)
    await _alter(s, "client_id = NULL", HOLD)
    names_the_entry(await trail.get("/v1/audit/legal-holds"), HOLD, names)
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        with pytest.raises(RetentionError, match=f"position {HOLD} was altered"):
            await prune_expired(
                pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="o", client_id="C-5"
            )


async def test_a_prune_meeting_a_hold_whose_type_column_was_altered_writes_nothing(
    trail: Trail,
) -> None:
    """A hold of C-1 placed long ago whose event_type column was altered away: the facts'
    query does not select it, so C-1 looked unheld; the prune reads it among its candidates
    (C-1's relationship ended, the hold is past the cutoff) and refused only that entry,
    pruning C-1's others. Now it refuses the prune, writing nothing (D-11, #12)."""
    s = trail.settings
    hold = hold_placed_event(
        now=OLD + timedelta(days=1),
        actor_id="auditor-1",
        actor_role="auditor",
        client_id="C-1",
        hold_id="LH-OLD",
        reason="regulatory_investigation",
        case_reference=None,
        holds={},
    )
    await trail.audit.ledger.append([hold], now=OLD + timedelta(days=1))
    old_hold = await trail.audit.ledger.size()
    await _alter(s, "event_type = 'visit.arrived'", old_hold)
    size = await trail.audit.ledger.size()
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        with pytest.raises(RetentionError, match=f"position {old_hold} was altered") as refused:
            await prune_expired(pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="o")
    assert "audit.legal_hold_placed" in str(refused.value)
    assert await trail.audit.ledger.size() == size  # nothing written


FACT_ALTERATIONS: dict[str, tuple[str, str]] = {
    "occurred_at a day later": ALTERATIONS["occurred_at a day later"],
    "appended_at in year 5": ALTERATIONS["appended_at in year 5"],
    "a field added to the body": (
        f"""canonical = convert_to(replace({_BYTES}, '"data":{{"', '"data":{{"x":1,"'), 'UTF8')""",
        "hash does not match",
    ),
}


@pytest.mark.parametrize("alteration", list(FACT_ALTERATIONS))
async def test_an_altered_closure_or_hold_is_never_decided_on(
    trail: Trail, alteration: str
) -> None:
    """A relationship end or a legal hold altered to a plausible value: the prune, which
    decides by them, refuses before writing anything; the holds are refused, naming it."""
    assignment, names = FACT_ALTERATIONS[alteration]
    s = trail.settings
    await _alter(s, assignment, CLOSURE)
    size = await trail.audit.ledger.size()
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        with pytest.raises(RetentionError, match=f"position {CLOSURE} was altered") as refused:
            await prune_expired(pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="o")
    assert refused.value.rule == "D-11"
    assert names in str(refused.value)
    assert await trail.audit.ledger.size() == size  # nothing written
    await _alter(s, assignment, HOLD)
    names_the_entry(await trail.get("/v1/audit/legal-holds"), HOLD, names)
    lift = await trail.client.post(
        "/v1/audit/legal-holds/LH-1/lift",
        json={"reason": "matter_closed"},
        headers=trail.tokens.headers(Role.AUDITOR, sub="auditor-1"),
    )
    names_the_entry(lift, HOLD, names)
