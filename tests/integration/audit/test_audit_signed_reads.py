"""The trail's readers hold what they serve against a signed checkpoint (tamper evidence,
D-11, Round 28): a rewrite that recomputes every later hash passes each entry's own check and
every link, and only a checkpoint sees it. Each read also reads the smallest signed
checkpoint covering its last entry (the latest when none does yet) and the stored hash at its
size, proven once per process against the signed root: a rewrite of the ledger's last entry
under a checkpoint, or of an entry with every hash after it recomputed, is refused by name
(409 ``ledger-integrity``; an export's signed incomplete trailer), and no checkpoint is
signed over it. Before, the pages, the console and exports served it; only verify and the
proofs of entries under that checkpoint saw it, and the next checkpoint signed it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.holds import HoldActor, place_hold
from branchline_audit.bootstrap import create_app
from branchline_audit.domain.export import bytes_lines, verify_export
from branchline_audit.domain.note import Verifier
from branchline_audit.domain.verification import AlteredEntry
from branchline_cli.main import app
from branchline_shared.clock import FixedClock
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import (
    T0,
    AuditorTrail,
    audit_context,
    event,
    names_the_entry,
    positions,
    quick_settings,
    rewrite_rechaining,
)
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FIRST = 10
"""The first checkpoint's size (positions 1..10, client C-1)."""
SECOND = 20
"""The second checkpoint's size (positions 11..20, client C-3)."""
SIGNED = "is not what the signed checkpoint of tree size"


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
        await audit.ledger.append([event(n) for n in range(1, FIRST + 1)], now=T0)
        await checkpoint_now(audit)  # signs 1..10
        await audit.ledger.append(
            [event(n, client_id="C-3") for n in range(FIRST + 1, SECOND + 1)], now=T0
        )
        await checkpoint_now(audit)  # signs 1..20
        answer = await client.get(
            "/v1/audit/public-key", headers=tokens.headers(Role.AUDITOR, sub="auditor-1")
        )
        key = Verifier.from_verifier_key(answer.json()["verifier_key"])
        yield Trail(client, audit, s, tokens, key)


def _ended_incomplete(trail: Trail, response: httpx.Response, position: int, sent: int) -> None:
    assert response.status_code == 200, response.text
    verdict = verify_export(bytes_lines(response.content), trail.key)
    assert not verdict.ok, verdict
    assert verdict.incomplete, verdict
    assert verdict.entries == sent, verdict
    assert "D-11" in (verdict.reason or ""), verdict
    assert f"position {position} was altered" in (verdict.reason or ""), verdict
    assert f"{SIGNED} {position}" in (verdict.reason or ""), verdict


async def test_the_ledgers_last_entry_rewritten_under_a_checkpoint_is_refused(
    trail: Trail,
) -> None:
    """D-11: the entry at the latest checkpoint's size (the ledger's last when signed: no entry
    after it linked to it) rewritten with its hash recomputed; the reads' own records append
    after it, linked to the rewritten hash. Proven the first time after the rewrite (this
    process had not proven that checkpoint yet)."""
    await rewrite_rechaining(trail.settings, SECOND)
    verdict = (await trail.get("/v1/audit/verify")).json()
    assert not verdict["ok"], verdict

    # Every read holding it, or after it, is refused naming the checkpoint's position.
    for params in ({}, {"cursor": str(SECOND - 1)}, {"cursor": str(SECOND)}, {"client_id": "C-3"}):
        names_the_entry(await trail.get("/v1/audit/entries", **params), SECOND, SIGNED)
    for path in ("/console/trail", f"/console/entries/{SECOND}", f"/console/entries/{FIRST + 1}"):
        page = await trail.page(path, purpose="review")
        assert page.status_code == 409, (path, page.text)
        assert f"position {SECOND} was altered" in page.text
    # What the first checkpoint covers is served.
    assert positions(await trail.get("/v1/audit/entries", limit=FIRST)) == list(range(1, FIRST + 1))
    assert (await trail.page(f"/console/entries/{FIRST}", purpose="review")).status_code == 200

    # No checkpoint is signed over it: a proof of an entry after it, an export, a direct
    # signing are refused by name.
    names_the_entry(await trail.get(f"/v1/audit/entries/{SECOND + 1}/proof"), SECOND, SIGNED)
    export = await trail.get("/v1/audit/export", purpose="review")
    _ended_incomplete(trail, export, SECOND, sent=0)
    with pytest.raises(AlteredEntry, match=f"position {SECOND} was altered"):
        await checkpoint_now(trail.audit)
    latest = await trail.audit.checkpoints.latest()
    assert latest is not None
    assert latest.tree_size == SECOND


async def test_an_entry_rewritten_with_every_later_hash_is_refused_after_reads_proved_it(
    trail: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D-11: a consistent re-chaining from position 12 on, after the API process proved both
    checkpoints' last leaves (the reads below): the proven hash is compared, in memory, with
    the one each read reads."""
    assert len(positions(await trail.get("/v1/audit/entries", limit=SECOND))) == SECOND
    assert len(positions(await trail.get("/v1/audit/entries", limit=FIRST))) == FIRST
    rewritten = FIRST + 2
    await rewrite_rechaining(trail.settings, rewritten)
    assert not (await trail.get("/v1/audit/verify")).json()["ok"]

    # The reads the second checkpoint covers, or past it, are refused; its entries are all
    # re-chained from 12 on, the two before 12 refused with them (one checkpoint's range).
    for params in (
        {},
        {"limit": str(SECOND)},
        {"cursor": str(rewritten), "limit": "1"},
        {"cursor": str(FIRST), "limit": "1"},
        {"client_id": "C-3"},
        {"cursor": str(SECOND)},
    ):
        names_the_entry(await trail.get("/v1/audit/entries", **params), SECOND, SIGNED)
    page = await trail.page(f"/console/entries/{rewritten}", purpose="review")
    assert page.status_code == 409, page.text
    assert f"position {SECOND} was altered" in page.text
    # The first checkpoint's entries are served.
    assert len(positions(await trail.get("/v1/audit/entries", limit=FIRST))) == FIRST

    # A started export proves against the latest signed checkpoint (none is signed over the
    # rewrite), sends what the first checkpoint covers, then the signed trailer naming it.
    export = await trail.get("/v1/audit/export", purpose="review")
    _ended_incomplete(trail, export, SECOND, sent=0)  # its first page holds 1..20
    from branchline_audit.application import exporting

    monkeypatch.setattr(exporting, "FIRST_PAGE_SIZE", FIRST)
    export = await trail.get("/v1/audit/export", purpose="review")
    _ended_incomplete(trail, export, SECOND, sent=FIRST)


async def test_a_refusal_names_the_entries_it_refuses_and_where_the_rewrite_lies(
    trail: Trail,
) -> None:
    """#12, Round 32: a refusal under a contradicted checkpoint named only the checkpoint
    (position 20). It now also names the entries of the read it refuses and where the
    rewrite lies as far as the signed checkpoints tell: after the last one whose leaf still
    holds (10), at or before the contradicted one (20)."""
    rewritten = FIRST + 2
    await rewrite_rechaining(trail.settings, rewritten)
    between = f"between positions {FIRST + 1} and {SECOND}"
    holds = f"the signed checkpoint of tree size {FIRST} holds"

    one = await trail.get("/v1/audit/entries", cursor=str(rewritten - 1), limit="1")
    names_the_entry(one, SECOND, SIGNED)
    detail = one.json()["detail"]
    assert between in detail, detail
    assert holds in detail, detail
    assert f"the entry at position {rewritten} is refused with it" in detail, detail

    page = await trail.get("/v1/audit/entries", cursor=str(FIRST), limit="5")
    names_the_entry(page, SECOND, SIGNED)
    detail = page.json()["detail"]
    assert f"the entries at positions {FIRST + 1} to {FIRST + 5} are refused with it" in detail
    assert between in detail, detail

    console = await trail.page(f"/console/entries/{rewritten}", purpose="review")
    assert console.status_code == 409, console.text
    assert between in console.text
    assert f"the entry at position {rewritten} is refused with it" in console.text

    # A rewrite under the first checkpoint: no checkpoint below it holds.
    await rewrite_rechaining(trail.settings, 2)
    first = await trail.get("/v1/audit/entries", limit="3")
    names_the_entry(first, FIRST, SIGNED)
    detail = first.json()["detail"]
    assert f"the entry rewritten lies at or before position {FIRST}" in detail, detail
    assert "the entries at positions 1 to 3 are refused with it" in detail, detail


async def test_a_hold_rewritten_with_every_later_hash_is_refused(trail: Trail) -> None:
    """D-11 (#12): a legal hold's entry re-chained (its case reference rewritten, its hash
    and every later one recomputed) under a signed checkpoint: listing the holds, lifting it,
    placing another and a prune that would decide by the holds are refused by name (409
    ``ledger-integrity``; the prune's RetentionError), as every trail read is. Before, the
    reads of holds and relationship ends carried the checkpoint's leaf but did not check it:
    the rewritten hold was listed, lifted and decided on."""
    from branchline_audit.application.pruning import RetentionError, prune_expired
    from branchline_audit.bootstrap import retention_policy

    auditor = trail.tokens.headers(Role.AUDITOR, sub="auditor-1")
    body = {
        "client_id": "C-9",
        "hold_id": "LH-9",
        "reason": "regulatory_investigation",
        "case_reference": "CSRC-1",
    }
    placed = await trail.client.post("/v1/audit/legal-holds", json=body, headers=auditor)
    assert placed.status_code == 201, placed.text
    position = placed.json()["position"]
    signed = await checkpoint_now(trail.audit)
    assert signed.tree_size >= position
    listed = await trail.client.get("/v1/audit/legal-holds", headers=auditor)
    assert [h["hold_id"] for h in listed.json()["holds"]] == ["LH-9"], listed.text

    await rewrite_rechaining(trail.settings, position, b'"CSRC-1"', b'"CSRC-2"')
    size = signed.tree_size
    listed = await trail.client.get("/v1/audit/legal-holds", headers=auditor)
    names_the_entry(listed, size, SIGNED)
    lifted = await trail.client.post(
        "/v1/audit/legal-holds/LH-9/lift", json={"reason": "matter_closed"}, headers=auditor
    )
    names_the_entry(lifted, size, SIGNED)
    other = {**body, "hold_id": "LH-10"}
    names_the_entry(
        await trail.client.post("/v1/audit/legal-holds", json=other, headers=auditor),
        size,
        SIGNED,
    )
    with pytest.raises(RetentionError, match=f"position {size} was altered"):
        await prune_expired(
            trail.audit.ledger,
            retention_policy(trail.settings),
            trail.audit.clock,
            actor_id="auditor-1",
            dry_run=True,
        )


# --------------------------------------------------------------------------------------------
# The tools' ledgers (#12): ``branchline audit prune`` and ``audit holds`` built their ledger as
# ``PostgresLedger(pool)``, which read the holds unchecked; they are now the service's ledger
# (bootstrap.audit_context), and a bare one refuses to read them (UncheckedFacts).

runner = CliRunner()


async def _signed_hold(settings: BranchlineSettings) -> int:
    """A hold of C-5 with case reference CSRC-1 among entries of C-1, signed; the signed
    checkpoint's size."""
    async with audit_context(settings, clock=FixedClock(T0)) as audit:
        await audit.ledger.append([event(n) for n in range(1, 4)], now=T0)
        _, position = await place_hold(
            audit.ledger,
            FixedClock(T0),
            actor=HoldActor("auditor-1", "auditor"),
            client_id="C-5",
            hold_id="LH-1",
            reason="regulatory_investigation",
            case_reference="CSRC-1",
        )
        await audit.ledger.append([event(n) for n in range(5, 8)], now=T0)
        signed = await checkpoint_now(audit)
    assert signed.tree_size > position
    await rewrite_rechaining(settings, position, b'"CSRC-1"', b'"CSRC-2"')
    return signed.tree_size


def test_the_prune_and_holds_commands_refuse_a_hold_rewritten_under_a_checkpoint(
    cli_settings: BranchlineSettings,
) -> None:
    """D-11 (#12): the prune tool's path and the holds commands hold the holds against their
    signed checkpoint as the service does: a hold re-chained under it refuses the prune
    (nothing is pruned) and the listing, exit 2 naming the checkpoint's position. Before, the
    tools' bare ledger listed the rewritten hold and the prune decided by it (exit 0)."""
    size = asyncio.run(_signed_hold(cli_settings))
    for command in (
        ["audit", "prune", "--actor", "ops-1", "--dry-run"],
        ["audit", "prune", "--actor", "ops-1"],
        ["audit", "holds", "list"],
    ):
        refused = runner.invoke(app, command)
        assert refused.exit_code == 2, (command, refused.output)
        assert "refused (D-11)" in refused.stderr, (command, refused.stderr)
        assert f"position {size} was altered" in refused.stderr, (command, refused.stderr)
        assert f"{SIGNED} {size}" in refused.stderr, (command, refused.stderr)
        assert "CSRC-2" not in refused.stdout, (command, refused.stdout)


def test_the_prune_and_holds_commands_refuse_without_the_logs_key(
    cli_settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """D-11 (#12): without the log's key the holds cannot be held against the signed
    checkpoints: the prune and the holds commands refuse by name (exit 2), never pruning or
    listing unchecked, never a traceback. Before, they read the holds unchecked (exit 0)."""
    monkeypatch.setenv("BRANCHLINE_AUDIT_SIGNING_KEY_FILE", str(tmp_path / "no-key"))
    for command in (
        ["audit", "prune", "--actor", "ops-1", "--dry-run"],
        ["audit", "holds", "list"],
    ):
        refused = runner.invoke(app, command)
        assert refused.exit_code == 2, (command, refused.output)
        assert "refused (D-11)" in refused.stderr, (command, refused.stderr)
        assert "no-key does not exist" in refused.stderr, (command, refused.stderr)
