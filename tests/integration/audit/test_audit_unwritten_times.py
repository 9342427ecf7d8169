"""Every reader of the ledger facing a row whose time column was altered behind the ledger's
back to a time no append writes (an infinity, a year past 9999, a BC year): verify locates it
(tamper/test_tamper_times.py); the trail's other readers name it as the altered entry it is (tamper
evidence, D-11) and fail only where they meet it, never with a 5xx or a crashed pass (#12)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from branchline_audit.adapters.ledger import LedgerFilters
from branchline_audit.application.checkpointing import checkpoint_if_due, checkpoint_now
from branchline_audit.application.holds import HoldActor, place_hold
from branchline_audit.application.pruning import prune_expired
from branchline_audit.bootstrap import create_app, retention_policy
from branchline_audit.domain.export import bytes_lines, verify_export
from branchline_audit.domain.note import Verifier
from branchline_audit.domain.retention import RetentionError
from branchline_cli.main import app
from branchline_shared.clock import FixedClock
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import (
    T0,
    UNWRITTEN_TIMES,
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

runner = CliRunner()


OLD = T0 - timedelta(days=365 * 11)
ENTRY = 2
"""A plain entry of C-1, appended eleven years ago: its client's relationship ended then, so
it is due for pruning, as are positions 1 and 4."""
CLOSURE = 3
HOLD = 12
"""After the read its placing recorded (D-11)."""


@pytest.fixture
async def trail(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[AuditorTrail]:
    s = quick_settings(settings)
    async with (
        serve(create_app(s)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        audit_context(s, clock=FixedClock(T0)) as audit,
    ):
        closed = lifecycle_event(40, "client.account_closed", client_id="C-1", at=OLD)
        await audit.ledger.append(
            [event(1), event(2), closed, event(3)], now=OLD
        )  # positions 1..4 (C-1)
        await audit.ledger.append([event(n, client_id="C-2") for n in range(4, 10)], now=T0)
        await checkpoint_now(audit)  # signs 1..10
        trail = AuditorTrail(client, audit, s, tokens)
        placed = await client.post(
            "/v1/audit/legal-holds",
            json={"client_id": "C-5", "hold_id": "LH-1", "reason": "regulatory_investigation"},
            headers=tokens.headers(Role.AUDITOR, sub="auditor-1"),
        )
        assert placed.status_code == 201, placed.text
        assert placed.json()["position"] == HOLD
        yield trail


async def _alter(settings: BranchlineSettings, column: str, text: str, position: int) -> None:
    await behind_the_ledgers_back(
        settings,
        f"UPDATE audit_ledger SET {column} = $1::text::timestamptz WHERE position = $2",
        text,
        position,
    )


@pytest.mark.parametrize("text", UNWRITTEN_TIMES)
@pytest.mark.parametrize("column", ["appended_at", "occurred_at", "pruned_at"])
async def test_the_apis_readers_name_the_altered_entry_and_serve_the_others(
    trail: AuditorTrail, column: str, text: str
) -> None:
    await _alter(trail.settings, column, text, ENTRY)

    verdict = (await trail.get("/v1/audit/verify")).json()
    assert verdict["first_bad_position"] == ENTRY, verdict

    # A page holding it is refused, naming it; the pages around it are served.
    names_the_entry(await trail.get("/v1/audit/entries"), ENTRY, column)
    assert positions(await trail.get("/v1/audit/entries", limit=1)) == [1]
    assert positions(await trail.get("/v1/audit/entries", cursor=str(ENTRY)))[0] == ENTRY + 1
    assert positions(await trail.get("/v1/audit/entries", client_id="C-2"))[:6] == [
        5,
        6,
        7,
        8,
        9,
        10,
    ]

    # Its proof is refused; the others' are given.
    names_the_entry(await trail.get(f"/v1/audit/entries/{ENTRY}/proof"), ENTRY, column)
    assert (await trail.get("/v1/audit/entries/5/proof")).status_code == 200

    # An export holding it is refused before it starts; one without it is served and verifies.
    names_the_entry(await trail.get("/v1/audit/export", purpose="review"), ENTRY, column)
    other = await trail.get("/v1/audit/export", purpose="review", client_id="C-2")
    assert other.status_code == 200, other.text
    key = (await trail.get("/v1/audit/public-key")).json()["verifier_key"]
    assert verify_export(bytes_lines(other.content), Verifier.from_verifier_key(key)).ok

    # The console's pages say so too, for that entry only.
    page = await trail.page("/console/trail", purpose="review")
    assert page.status_code == 409, page.text
    assert f"position {ENTRY}" in page.text
    assert "D-11" in page.text
    assert (await trail.page("/console/trail", purpose="review", cursor=ENTRY)).status_code == 200
    one = await trail.page(f"/console/entries/{ENTRY}", purpose="review")
    assert one.status_code == 409, one.text
    assert f"position {ENTRY}" in one.text
    assert "D-11" in one.text
    assert (await trail.page("/console/entries/5", purpose="review")).status_code == 200

    # Legal holds and checkpoints do not read it.
    holds = await trail.get("/v1/audit/legal-holds")
    assert [h["hold_id"] for h in holds.json()["holds"]] == ["LH-1"]
    assert (await trail.get("/v1/audit/checkpoints/latest")).status_code == 200


@pytest.mark.parametrize("text", UNWRITTEN_TIMES)
@pytest.mark.parametrize("column", ["appended_at", "occurred_at", "pruned_at"])
async def test_pruning_skips_the_altered_entry_with_its_reason_and_prunes_the_others(
    trail: AuditorTrail, column: str, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _alter(trail.settings, column, text, ENTRY)
    s = trail.settings
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        with caplog.at_level(logging.WARNING):
            outcome = await prune_expired(
                pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="ops-1"
            )
    assert outcome.ranges == [[1, 1], [3, 4]], outcome  # the closure's entry too
    # Met by the pass (an entry appended "before" the cutoff) it is named with its reason.
    if ENTRY in outcome.altered_skipped:
        assert column in outcome.altered_skipped[ENTRY]
        assert f"position {ENTRY}" in caplog.text
    verdict = (await trail.get("/v1/audit/verify")).json()
    assert verdict["bad_positions"] == [ENTRY], verdict  # the prune's own work verifies


@pytest.mark.parametrize("text", UNWRITTEN_TIMES)
@pytest.mark.parametrize("column", ["appended_at", "occurred_at"])
async def test_an_altered_closure_or_hold_refuses_what_depends_on_it(
    trail: AuditorTrail, column: str, text: str
) -> None:
    """A relationship end or a legal hold whose time no append writes: the prune, which
    decides by them, refuses before writing anything; the holds are refused, naming it."""
    s = trail.settings
    await _alter(s, column, text, CLOSURE)
    size = await trail.audit.ledger.size()
    async with audit_context(s, role=s.audit_db_pruner_role) as pruner:
        with pytest.raises(RetentionError, match=f"position {CLOSURE}") as refused:
            await prune_expired(pruner.ledger, retention_policy(s), FixedClock(T0), actor_id="o")
    assert refused.value.rule == "D-11"
    assert column in str(refused.value)
    assert await trail.audit.ledger.size() == size  # nothing written
    await _alter(s, column, text, HOLD)
    names_the_entry(await trail.get("/v1/audit/legal-holds"), HOLD, column)
    lift = await trail.client.post(
        "/v1/audit/legal-holds/LH-1/lift",
        json={"reason": "matter_closed"},
        headers=trail.tokens.headers(Role.AUDITOR, sub="auditor-1"),
    )
    names_the_entry(lift, HOLD, column)
    lifted = await trail.audit.ledger.entries(
        LedgerFilters(type="audit.legal_hold_lifted"), after_position=0, limit=10
    )
    assert lifted == []  # nothing was decided on it


@pytest.mark.parametrize("text", UNWRITTEN_TIMES)
async def test_the_checkpointer_signs_past_an_altered_append_time(
    trail: AuditorTrail, text: str
) -> None:
    """The first unsigned entry's append time decides when to sign: one no append writes
    counts as long past (a checkpoint signs hashes, which the column does not change)."""
    await _alter(trail.settings, "appended_at", text, 11)  # the first unsigned entry
    signed = await checkpoint_if_due(trail.audit)
    assert signed is not None
    assert signed.tree_size == await trail.audit.ledger.size()


async def _cli_ledger(settings: BranchlineSettings) -> int:
    """Positions 1..4 as the trail fixture's, and a hold of C-5 at 5; its position."""
    async with audit_context(settings) as audit:
        closed = lifecycle_event(40, "client.account_closed", client_id="C-1", at=OLD)
        await audit.ledger.append([event(1), event(2), closed, event(3)], now=OLD)
        _, position = await place_hold(
            audit.ledger,
            FixedClock(T0),
            actor=HoldActor("auditor-1", "auditor"),
            client_id="C-5",
            hold_id="LH-1",
            reason="regulatory_investigation",
        )
        await checkpoint_now(audit)
    return position


def test_the_audit_commands_name_the_altered_entry_and_go_on(
    cli_settings: BranchlineSettings,
) -> None:
    """``branchline audit verify | prune | holds list`` with an entry whose time no append
    writes: verify locates it, prune skips it by name and prunes the others, and an altered
    hold refuses what depends on it (exit 2, D-11): never a traceback."""
    s = cli_settings
    hold = asyncio.run(_cli_ledger(s))
    asyncio.run(_alter(s, "appended_at", "-infinity", ENTRY))
    verified = runner.invoke(app, ["audit", "verify", "--no-progress", "--processes", "1"])
    assert verified.exit_code == 1, verified.output
    assert json.loads(verified.stdout)["first_bad_position"] == ENTRY
    pruned = runner.invoke(app, ["audit", "prune", "--actor", "ops-1"])
    assert pruned.exit_code == 0, pruned.output
    body = json.loads(pruned.stdout)
    assert body["positions"] == [[1, 1], [3, 4]]
    assert f"position {ENTRY}" in body["altered_skipped"][str(ENTRY)]
    asyncio.run(_alter(s, "occurred_at", "infinity", hold))
    for command in (["audit", "holds", "list"], ["audit", "prune", "--actor", "ops-1"]):
        refused = runner.invoke(app, command)
        assert refused.exit_code == 2, (command, refused.output)
        assert "refused (D-11)" in refused.stderr
        assert f"position {hold}" in refused.stderr


# --------------------------------------------------------------------------------------------
# An export that fails once it has started (#12): the response is already 200 and lines are
# sent, so the export ends with the server's signed incomplete trailer in place of the manifest.

LATER = 5
"""Beyond the export's first page of 2 (positions 1, 2): altered after the export's check."""


def _no_unhandled_error(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The server's records of the export: one warning with the reason, no error, no traceback."""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    warnings = [r for r in caplog.records if r.name == "branchline_audit.application.exporting"]
    assert len(warnings) == 1, caplog.text
    assert warnings[0].levelno == logging.WARNING
    return warnings


@pytest.mark.parametrize("content", ["jsonl", "csv"])
async def test_an_entry_altered_after_the_exports_check_ends_it_signed_incomplete(
    trail: AuditorTrail,
    content: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
) -> None:
    from branchline_audit.application import exporting

    key = (await trail.get("/v1/audit/public-key")).json()["verifier_key"]
    verifier = Verifier.from_verifier_key(key)
    whole = await trail.get("/v1/audit/export", purpose="review", format=content)
    assert verify_export(bytes_lines(whole.content), verifier).ok

    monkeypatch.setattr(exporting, "PAGE_SIZE", 2)
    original = exporting.checked_views_of
    pages = 0

    async def views_then_alter(*args: Any, **kwargs: Any) -> Any:
        nonlocal pages
        pages += 1
        views = await original(*args, **kwargs)
        if pages == 1:  # the first page is read; the export's check is long past
            await _alter(trail.settings, "appended_at", "infinity", LATER)
        return views

    monkeypatch.setattr(exporting, "checked_views_of", views_then_alter)
    with caplog.at_level(logging.WARNING):
        cut = await trail.get("/v1/audit/export", purpose="review", format=content)
    assert cut.status_code == 200  # the stream had started
    verdict = verify_export(bytes_lines(cut.content), verifier)
    assert not verdict.ok, verdict
    assert verdict.incomplete, verdict
    assert verdict.entries == LATER - 1  # pages [1, 2] and [3, 4] were sent and hold
    assert verdict.line == cut.content.count(b"\n")
    assert f"after position {LATER - 1}" in (verdict.reason or "")
    assert "D-11" in (verdict.reason or "")
    assert f"position {LATER} was altered" in (verdict.reason or "")
    assert "appended_at holds 'infinity'" in (verdict.reason or "")
    # The lines sent are the complete export's, byte for byte (same checkpoint, same views).
    sent = cut.content.splitlines(keepends=True)[:-1]
    assert sent == whole.content.splitlines(keepends=True)[: len(sent)]
    (warning,) = _no_unhandled_error(caplog)
    assert f"position {LATER}" in warning.getMessage()

    exported = tmp_path / f"cut.{content}"
    exported.write_bytes(cut.content)
    result = runner.invoke(app, ["audit", "verify-export", str(exported), "--public-key", key])
    assert result.exit_code == 1, result.output
    assert "INCOMPLETE" in result.output
    assert f"position {LATER} was altered" in result.output

    metrics = (await trail.client.get("/metrics")).text
    assert 'branchline_audit_exports_incomplete_total{cause="altered-entry"}' in metrics


async def test_a_database_failure_mid_stream_ends_the_export_signed_incomplete(
    trail: AuditorTrail, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncpg

    from branchline_audit.adapters.ledger import PostgresLedger
    from branchline_audit.application import exporting

    monkeypatch.setattr(exporting, "PAGE_SIZE", 2)
    original = PostgresLedger.entries
    calls = 0

    async def entries_then_lost(self: PostgresLedger, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:  # the third page: the connection is lost, as asyncpg reports it
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(PostgresLedger, "entries", entries_then_lost)
    with caplog.at_level(logging.WARNING):
        cut = await trail.get("/v1/audit/export", purpose="review", client_id="C-2")
    assert cut.status_code == 200
    key = (await trail.get("/v1/audit/public-key")).json()["verifier_key"]
    verdict = verify_export(bytes_lines(cut.content), Verifier.from_verifier_key(key))
    assert not verdict.ok, verdict
    assert verdict.incomplete, verdict
    assert verdict.entries == 4  # C-2's 5, 6 then 7, 8
    assert "after position 8" in (verdict.reason or "")
    assert "ConnectionDoesNotExistError" in (verdict.reason or "")
    (warning,) = _no_unhandled_error(caplog)
    assert "connection was closed" in warning.getMessage()
    metrics = (await trail.client.get("/metrics")).text
    assert 'branchline_audit_exports_incomplete_total{cause="error"}' in metrics
