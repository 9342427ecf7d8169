"""Streaming exports with a signed manifest (format: :mod:`branchline_audit.domain.export`).

The export proves against a checkpoint signed when it starts; entries are read page by page
and sent as they are formatted, so memory stays flat whatever the export's size.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.application.querying import checked_views_of
from branchline_audit.application.recording import record_read
from branchline_audit.application.signed_leaves import unsigned_history
from branchline_audit.domain.export import ExportContent, ExportWriter
from branchline_audit.domain.filters import LedgerFilters
from branchline_audit.domain.records import rfc3339
from branchline_audit.domain.subtrees import SharedProofs
from branchline_audit.domain.verification import (
    AlteredEntry,
    ServedCheck,
    StoredCheckpoint,
    UnsignedHistory,
    refuse_altered,
    sound_before_altered,
)

logger = logging.getLogger(__name__)

INCOMPLETE_EXPORTS = Counter(
    "branchline_audit_exports_incomplete_total",
    "Exports ended with the signed incomplete trailer instead of the manifest, by cause",
    ["cause"],
)

PAGE_SIZE = 500
FIRST_PAGE_SIZE = 20
"""The first page is small, so that the export's first line waits for a few entries' lines
(and a filtered export's proofs) rather than 500 (#12); the pages are sent one after another
as they are, so the export's bytes are the same whatever the page sizes."""
MEDIA_TYPES: dict[ExportContent, str] = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}


class ExportSlots:
    """A cap on concurrent exports; a slot is held until the stream ends or is abandoned."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0

    def take(self) -> bool:
        if self.running >= self.limit:
            return False
        self.running += 1
        return True

    def give_back(self) -> None:
        self.running -= 1

    async def held_while(self, lines: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for line in lines:
                yield line
        finally:
            self.give_back()


class ExportsBusy(Exception):
    """Every export slot is taken (the caller answers 429 with ``Retry-After``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} exports are running; retry when one has finished")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class StartedExport:
    """An export whose read is recorded and whose slot is held until ``lines`` ends."""

    lines: AsyncIterator[str]
    media_type: str
    filename: str


async def start_export(
    audit: AuditContext,
    slots: ExportSlots,
    reader: TrailReader,
    filters: LedgerFilters,
    content: ExportContent,
    *,
    route: str,
) -> StartedExport:
    """Start an export for the API and the console alike: take a slot (:class:`ExportsBusy`
    if none is free; a refused export is recorded nowhere), record the read in the ledger
    before any entry is sent (D-11), and hand back the stream that gives the slot back when
    it ends or is abandoned. An export holding an entry altered behind the ledger's back is
    refused (:class:`AlteredEntry`) after its read is recorded, as any read of it."""
    if not slots.take():
        raise ExportsBusy(slots.limit)
    try:
        await record_read(audit, reader, route, {**filters.as_dict(), "format": content})
        # An entry altered behind the ledger's back refuses the export before it starts
        # (AlteredEntry, D-11), rather than a stream that ends half-way (#12).
        altered = await audit.ledger.first_altered(filters)
        if altered is not None:
            refuse_altered([altered])
    except BaseException:
        slots.give_back()
        raise
    stamp = audit.clock.now().strftime("%Y%m%dT%H%M%SZ")
    return StartedExport(
        lines=slots.held_while(export_lines(audit, filters, content, reader)),
        media_type=MEDIA_TYPES[content],
        filename=f"audit-{stamp}.{content}",
    )


async def export_lines(
    audit: AuditContext,
    filters: LedgerFilters,
    content: ExportContent,
    reader: TrailReader,
) -> AsyncIterator[str]:
    """The export's lines. Once it has started (the response is 200 and its first lines are
    sent) a failure cannot become an error answer: an entry altered behind the ledger's back
    after the export's check (D-11), the database lost mid-stream... end the export with the
    signed incomplete trailer naming the last position sent and the reason, in place of the
    manifest (``verify-export`` reports it as incomplete, never accepts it), logged as one
    warning and counted (#12). A complete export is unchanged, byte for byte."""
    writer = ExportWriter(content)
    signed: list[StoredCheckpoint] = []
    try:
        async for line in _export_body(audit, filters, content, reader, writer, signed):
            yield line
    except Exception as error:  # the stream has started: end it with what happened, signed
        if isinstance(error, AlteredEntry):
            cause, rule, reason = "altered-entry", error.rule, error.detail
        else:
            cause, rule = "error", None
            reason = f"the export failed on the server ({type(error).__name__}); retry it"
        logger.warning(
            "audit export ended incomplete after position %s (%d entries sent): %s%s",
            writer.last_position,
            writer.count,
            reason,
            "" if rule else f" [{type(error).__name__}: {error}]",
        )
        INCOMPLETE_EXPORTS.labels(cause).inc()
        trailer: dict[str, Any] = {
            **_described(audit, filters, reader),
            "reason": reason,
            "rule": rule,
        }
        if signed:
            trailer |= _signed_tree(signed[0])
        try:
            line = writer.incomplete_line(audit.signer, trailer)
        except Exception as failure:  # the key itself: the cut export is rejected as cut
            logger.warning("audit export: its incomplete trailer could not be signed: %r", failure)
            return
        yield line


def _described(audit: AuditContext, filters: LedgerFilters, reader: TrailReader) -> dict[str, Any]:
    return {
        "origin": audit.origin,
        "filters": {k: v for k, v in filters.as_dict().items() if v is not None},
        "purpose": reader.purpose,
        "exported_by": reader.subject,
        "exported_at": rfc3339(audit.clock.now()),
        "complete": filters.is_empty(),
    }


def _signed_tree(checkpoint: StoredCheckpoint) -> dict[str, Any]:
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash.hex(),
        "checkpoint": checkpoint.note,
    }


async def _export_body(
    audit: AuditContext,
    filters: LedgerFilters,
    content: ExportContent,
    reader: TrailReader,
    writer: ExportWriter,
    signed: list[StoredCheckpoint],
) -> AsyncIterator[str]:
    try:
        checkpoint = await checkpoint_now(audit)
    except UnsignedHistory:
        # None is signed over a ledger that contradicts the latest checkpoint (Round 28): the
        # export proves against that one, and its pages name what differs (an altered entry,
        # or the checkpoint's own position), after the sound lines before it.
        latest = await audit.checkpoints.latest()
        if latest is None:
            raise
        checkpoint = latest
    signed.append(checkpoint)
    size = checkpoint.tree_size
    complete = filters.is_empty()
    shared = None if complete or size == 0 else SharedProofs(size)
    header = writer.header()
    if header:
        yield header
    after = 0
    limit = min(FIRST_PAGE_SIZE, PAGE_SIZE)
    # Every entry's hash recomputed from its stored columns before its line is sent, and each
    # linked to the one before it across pages (D-11, #12): one altered to a plausible time or
    # content ends the export with the signed incomplete trailer naming it.
    check = ServedCheck()
    while True:
        page = await audit.ledger.entries(filters, after_position=after, limit=limit, up_to=size)
        if not page:
            break
        proofs: dict[int, list[bytes]] = {}
        if shared is not None:
            # The page's proofs from the subtrees they share, read and computed once for the
            # export (#12): what is not known yet is read in two queries per page.
            indices = [s.entry.position - 1 for s in page]
            shared.learn(*await audit.ledger.tree_data(shared.needs(indices)))
            proofs = {index + 1: shared.proof(index) for index in indices}
            shared.forget_before(indices[-1] + 1)
        # Every sound entry before an altered one is sent, then the export ends with the
        # signed incomplete trailer naming it (#12): the page is not refused whole. A page
        # whose covering signed checkpoint the ledger contradicts (a rewrite with every later
        # hash recomputed, Round 28) is not sent: the trailer names the checkpoint's position.
        sound, altered = sound_before_altered(page, check)
        if altered is None:
            altered = await unsigned_history(audit, page)
            if altered is not None:
                sound = ()
        chunk = []
        for view in await checked_views_of(audit, sound, reader):
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
        if chunk:
            yield "".join(chunk)
        if altered is not None:
            raise altered
        after = page[-1].entry.position
        if len(page) < limit:
            break
        limit = PAGE_SIZE
    yield writer.manifest_line(
        audit.signer,
        {**_described(audit, filters, reader), **_signed_tree(checkpoint)},
    )
