"""Verifying the whole ledger from the database, in constant memory."""

from __future__ import annotations

from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.domain.canonical import ChainVerdict, ChainVerifier


async def verify_ledger(ledger: PostgresLedger) -> ChainVerdict:
    verifier = ChainVerifier()
    async for entry in ledger.scan():
        if not verifier.feed(entry):
            break
    return verifier.verdict()
