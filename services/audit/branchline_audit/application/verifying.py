"""Verifying the whole ledger from the database, in constant memory: the chain, the index
columns, prunes and every signed checkpoint (:mod:`branchline_audit.domain.verification`).

With ``segments`` (and a ledger of at least their ``min_entries``) the ledger is split by
position into ``segments.processes`` ranges: the first is verified here while each other one
is verified in a process of its own, and their results are joined here in order. A segment
that does not join (its first entry is not at the position expected or does not link where
its process assumed: a tamper at the boundary) has its rows verified again here, from the
state the segments before it left. The verdict is the sequential one either way (#12)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from branchline_audit.application.ports import AuditCheckpoints, AuditLedger, SegmentVerifiers
from branchline_audit.domain.note import Verifier
from branchline_audit.domain.verification import (
    LedgerAuditor,
    LedgerVerdict,
    Segment,
    split_ledger,
)


async def verify_ledger(
    ledger: AuditLedger,
    checkpoints: AuditCheckpoints,
    *,
    verifier: Verifier | None,
    origin: str,
    progress: Callable[[int], None] | None = None,
    segments: SegmentVerifiers | None = None,
) -> LedgerVerdict:
    """``progress(n)`` is called after every page (every segment, in parallel) with the
    entries read so far."""
    stored = await checkpoints.all()
    auditor = LedgerAuditor(stored, verifier=verifier, origin=origin)
    if segments is not None and segments.processes > 1:
        size = await ledger.size()
        if size >= segments.min_entries:
            parts = split_ledger(size, segments.processes)
            sizes = frozenset(c.tree_size for c in stored)
            apart = asyncio.ensure_future(segments.verify(parts[1:], sizes))
            try:
                # The first segment here, while the processes start and verify the others.
                read = await _feed_segment(ledger, auditor, parts[0])
                if progress is not None:
                    progress(read)
                results = await apart
            finally:
                if not apart.done():
                    apart.cancel()
                    await asyncio.gather(apart, return_exceptions=True)
            for part, result in zip(parts[1:], results, strict=True):
                if auditor.joins(result):
                    auditor.absorb(result)
                    read += result.rows
                else:
                    read += await _feed_segment(ledger, auditor, part)
                if progress is not None:
                    progress(read)
            return auditor.verdict()
    read = 0
    async for page in ledger.scan_rows():
        auditor.feed_rows(page)  # goes on past a bad entry: every bad position is reported
        read += len(page)
        if progress is not None:
            progress(read)
    if progress is not None and read == 0:
        progress(read)
    return auditor.verdict()


async def verify_ledger_apart(
    ledger: AuditLedger,
    checkpoints: AuditCheckpoints,
    *,
    verifier: Verifier | None,
    origin: str,
    segments: SegmentVerifiers,
) -> LedgerVerdict:
    """The API's verify (#12, docs/audit.md "Verify"): :func:`verify_ledger`'s verdict with
    every segment read and checked apart (``segments.verify_apart``; one segment below
    ``segments.min_entries``), so the caller's event loop only joins their results and
    serves its other requests meanwhile. A segment that failed apart or does not join is
    verified here from the state the segments before it left, each page's check in a
    thread: the verdict (D-11: the first bad position, the reasons) is the sequential one
    either way."""
    stored = await checkpoints.all()
    # The checkpoints' signatures and roots are checked in threads too: many checkpoints
    # would hold the loop as long as a page of entries.
    auditor = await asyncio.to_thread(LedgerAuditor, stored, verifier=verifier, origin=origin)
    size = await ledger.size()
    parts = split_ledger(size, segments.processes if size >= segments.min_entries else 1)
    sizes = frozenset(c.tree_size for c in stored)
    results = await segments.verify_apart(parts, sizes)
    for part, result in zip(parts, results, strict=True):
        if result is not None and auditor.joins(result):
            await asyncio.to_thread(auditor.absorb, result)
        else:
            async for page in ledger.scan_rows(after_position=part.low, through=part.high):
                await asyncio.to_thread(auditor.feed_rows, page)
    return await asyncio.to_thread(auditor.verdict)


async def _feed_segment(ledger: AuditLedger, auditor: LedgerAuditor, part: Segment) -> int:
    """A segment's rows fed here, from where the auditor stands; how many."""
    read = 0
    async for page in ledger.scan_rows(after_position=part.low, through=part.high):
        auditor.feed_rows(page)
        read += len(page)
    return read
