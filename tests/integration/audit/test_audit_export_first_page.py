"""An export's first line waits for a small first page, and the export's bytes are the ones
it has with any page sizes (#12)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from branchline_audit.application import exporting
from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.domain.export import ExportContent, bytes_lines, verify_export
from branchline_audit.domain.filters import LedgerFilters
from branchline_audit.domain.note import Verifier
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    quick_settings,
    random_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

READER = TrailReader("auditor-1", frozenset({"auditor"}), purpose="review")
ENTRIES = 130


@pytest.fixture
async def audit(settings: BranchlineSettings) -> AsyncIterator[AuditContext]:
    async with audit_context(quick_settings(settings)) as context:
        events = random_events(ENTRIES, random.Random(16), clients=4)
        await append_in_batches(context.ledger, events, now=T0, batch=50)
        yield context


async def _chunks(audit: AuditContext, filters: LedgerFilters, content: ExportContent) -> list[str]:
    return [c async for c in exporting.export_lines(audit, filters, content, READER)]


def _verifier(audit: AuditContext) -> Verifier:
    return Verifier.from_verifier_key(audit.signer.verifier_key_string())


@pytest.mark.parametrize("content", ["jsonl", "csv"])
@pytest.mark.parametrize("filtered", [False, True])
async def test_the_first_line_comes_with_a_small_page_and_the_bytes_do_not_change(
    audit: AuditContext, content: ExportContent, filtered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    filters = LedgerFilters(client_id="C-1") if filtered else LedgerFilters()
    chunks = await _chunks(audit, filters, content)
    entries = chunks[1:-1] if content == "csv" else chunks[:-1]
    assert entries[0].count("\n") == exporting.FIRST_PAGE_SIZE  # not a whole page's 500
    assert all(c.count("\n") <= exporting.PAGE_SIZE for c in entries)
    verdict = verify_export(bytes_lines("".join(chunks).encode()), _verifier(audit))
    assert verdict.ok, verdict
    assert verdict.entries > exporting.FIRST_PAGE_SIZE

    # The same ledger (the checkpoint is the one signed above), one page throughout, and
    # pages of 7 after a first of 3: byte for byte the same export.
    for first, size in ((10_000, 10_000), (3, 7), (7, 7)):
        monkeypatch.setattr(exporting, "FIRST_PAGE_SIZE", first)
        monkeypatch.setattr(exporting, "PAGE_SIZE", size)
        assert "".join(await _chunks(audit, filters, content)) == "".join(chunks), (first, size)


@pytest.mark.parametrize("ledger", [5, exporting.FIRST_PAGE_SIZE - 3, ENTRIES])
async def test_entries_appended_after_the_checkpoint_are_not_exported(
    settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch, ledger: int
) -> None:
    """Entries appended after the checkpoint and before the first page is read are not in
    it, whether the page is then full or not: the export is the one of the checkpoint's tree
    (the page is bounded by its size)."""
    async with audit_context(quick_settings(settings)) as audit:
        rng = random.Random(17)
        await append_in_batches(audit.ledger, random_events(ledger, rng), now=T0)
        original_checkpoint, original_entries = exporting.checkpoint_now, audit.ledger.entries
        appended = asyncio.Event()

        async def entries(*args: Any, **kwargs: Any) -> Any:
            await asyncio.wait_for(appended.wait(), timeout=5)
            return await original_entries(*args, **kwargs)

        async def checkpoint(context: AuditContext) -> Any:
            signed = await original_checkpoint(context)
            later = random_events(exporting.FIRST_PAGE_SIZE, rng, ledger)
            await context.ledger.append(later, now=T0)
            appended.set()
            return signed

        monkeypatch.setattr(audit.ledger, "entries", entries)
        monkeypatch.setattr(exporting, "checkpoint_now", checkpoint)
        chunks = await _chunks(audit, LedgerFilters(), "jsonl")
        assert await audit.ledger.size() == ledger + exporting.FIRST_PAGE_SIZE
        verdict = verify_export(bytes_lines("".join(chunks).encode()), _verifier(audit))
        assert verdict.ok, verdict
        assert verdict.entries == ledger
        assert verdict.tree_size == ledger
