"""Streaming exports with a signed manifest (format: :mod:`branchline_audit.domain.export`).

The export proves against a checkpoint signed when it starts; entries are read page by page
and sent as they are formatted, so memory stays flat whatever the export's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from branchline_audit.adapters.ledger import LedgerFilters
from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.application.querying import views_of
from branchline_audit.domain.export import ExportContent, ExportWriter
from branchline_audit.domain.merkle import inclusion_proof
from branchline_audit.domain.records import rfc3339
from branchline_audit.domain.subtrees import RecordingHasher

PAGE_SIZE = 500


async def export_lines(
    audit: AuditContext,
    filters: LedgerFilters,
    content: ExportContent,
    reader: TrailReader,
) -> AsyncIterator[str]:
    checkpoint = await checkpoint_now(audit)
    size = checkpoint.tree_size
    complete = filters.is_empty()
    writer = ExportWriter(content)
    header = writer.header()
    if header:
        yield header
    after = 0
    while True:
        page = await audit.ledger.entries(
            filters, after_position=after, limit=PAGE_SIZE, up_to=size
        )
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
        if len(page) < PAGE_SIZE:
            break
    yield writer.manifest_line(
        audit.signer,
        {
            "origin": audit.origin,
            "filters": {k: v for k, v in filters.as_dict().items() if v is not None},
            "purpose": reader.purpose,
            "exported_by": reader.subject,
            "exported_at": rfc3339(audit.clock.now()),
            "complete": complete,
            "tree_size": size,
            "root_hash": checkpoint.root_hash.hex(),
            "checkpoint": checkpoint.note,
        },
    )
