"""A filtered export's proofs from the subtrees a page's entries share (#12): byte for byte
the export whose proofs were made one entry at a time (the code before, copied below), for
selective and broad filters, ledgers of a few pages and of a cached level or more, pages of
any size; and ``verify-export`` accepts it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from branchline_audit.application import exporting
from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.application.querying import views_of
from branchline_audit.domain.export import ExportContent, ExportWriter, bytes_lines, verify_export
from branchline_audit.domain.filters import LedgerFilters
from branchline_audit.domain.merkle import inclusion_proof
from branchline_audit.domain.note import Verifier
from branchline_audit.domain.subtrees import RecordingHasher
from branchline_audit.domain.verification import StoredCheckpoint
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    quick_settings,
    random_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

READER = TrailReader("auditor-1", frozenset({"auditor"}), purpose="review")
FILTERS = {
    "a client (selective)": LedgerFilters(client_id="C-3"),
    "a branch and a type": LedgerFilters(branch_id="BR-1", type="followup.*"),
    "a period (broad)": LedgerFilters(
        occurred_from=T0 + timedelta(minutes=7), occurred_to=T0 + timedelta(days=30)
    ),
}


async def _one_at_a_time_body(
    audit: AuditContext,
    filters: LedgerFilters,
    content: ExportContent,
    reader: TrailReader,
    writer: ExportWriter,
    signed: list[StoredCheckpoint],
) -> AsyncIterator[str]:
    """``exporting._export_body`` before the proofs were shared (main ``733d4c5``): each
    entry's proof by itself, from the ranges a recording pass named."""
    checkpoint = await checkpoint_now(audit)
    signed.append(checkpoint)
    size = checkpoint.tree_size
    complete = filters.is_empty()
    header = writer.header()
    if header:
        yield header
    after = 0
    limit = min(exporting.FIRST_PAGE_SIZE, exporting.PAGE_SIZE)
    while True:
        page = await audit.ledger.entries(filters, after_position=after, limit=limit, up_to=size)
        if not page:
            break
        proofs: dict[int, list[bytes]] = {}
        if not complete:
            recorder = RecordingHasher()
            for stored in page:
                inclusion_proof(stored.entry.position - 1, size, recorder)
            hasher = await audit.ledger.range_hasher(recorder.ranges)
            proofs = {
                s.entry.position: inclusion_proof(s.entry.position - 1, size, hasher) for s in page
            }
        chunk = []
        for view in await views_of(audit, page, reader):
            entry = view.stored.entry
            chunk.append(
                writer.entry_line(
                    position=entry.position,
                    appended_at=entry.appended_at,
                    prev_hash=entry.prev_hash,
                    hash=entry.hash,
                    event=view.event,
                    view=view.view.value,
                    proof=None if complete else proofs[entry.position],
                )
            )
        yield "".join(chunk)
        after = page[-1].entry.position
        if len(page) < limit:
            break
        limit = exporting.PAGE_SIZE
    yield writer.manifest_line(
        audit.signer,
        {**exporting._described(audit, filters, reader), **exporting._signed_tree(checkpoint)},
    )


async def _export(audit: AuditContext, filters: LedgerFilters, content: ExportContent) -> str:
    return "".join([c async for c in exporting.export_lines(audit, filters, content, READER)])


@pytest.mark.parametrize("entries", [130, 4_500])
async def test_the_shared_proofs_are_the_bytes_of_one_proof_at_a_time(
    settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch, entries: int
) -> None:
    async with audit_context(quick_settings(settings)) as audit:
        events = random_events(entries, random.Random(entries), clients=12, branches=3)
        await append_in_batches(audit.ledger, events, now=T0, batch=1000)
        verifier = Verifier.from_verifier_key(audit.signer.verifier_key_string())
        # Pages of a few entries: many pages, what one page learnt forgotten before the next.
        pages = [(exporting.FIRST_PAGE_SIZE, exporting.PAGE_SIZE), (3, 7 if entries < 1000 else 61)]
        for content in ("jsonl", "csv"):
            for name, filters in FILTERS.items():
                for first, size in pages:
                    monkeypatch.setattr(exporting, "FIRST_PAGE_SIZE", first)
                    monkeypatch.setattr(exporting, "PAGE_SIZE", size)
                    shared = await _export(audit, filters, content)
                    with monkeypatch.context() as before:
                        before.setattr(exporting, "_export_body", _one_at_a_time_body)
                        one_at_a_time = await _export(audit, filters, content)
                    assert shared == one_at_a_time, (content, name, first, size)
                    verdict = verify_export(bytes_lines(shared.encode()), verifier)
                    assert verdict.ok, (content, name, verdict)
                    assert verdict.entries > (3 if entries < 1000 else 100), (name, verdict)
