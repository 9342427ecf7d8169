"""Verifying the whole ledger from the database, in constant memory: the chain, the index
columns, prunes and every signed checkpoint (:mod:`branchline_audit.domain.verification`)."""

from __future__ import annotations

from collections.abc import Callable

from branchline_audit.application.ports import AuditCheckpoints, AuditLedger
from branchline_audit.domain.note import Verifier
from branchline_audit.domain.verification import LedgerAuditor, LedgerVerdict


async def verify_ledger(
    ledger: AuditLedger,
    checkpoints: AuditCheckpoints,
    *,
    verifier: Verifier | None,
    origin: str,
    progress: Callable[[int], None] | None = None,
) -> LedgerVerdict:
    """``progress(n)`` is called after every page with the entries read so far."""
    auditor = LedgerAuditor(await checkpoints.all(), verifier=verifier, origin=origin)
    read = 0
    async for page in ledger.scan_rows():
        for row in page:
            auditor.feed_row(row)  # goes on past a bad entry: every bad position is reported
        read += len(page)
        if progress is not None:
            progress(read)
    if progress is not None and read == 0:
        progress(read)
    return auditor.verdict()
