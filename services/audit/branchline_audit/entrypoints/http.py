"""The audit API for auditors and compliance officers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel

from branchline_audit.adapters.ledger import LedgerFilters, PostgresLedger
from branchline_audit.application.verifying import verify_ledger
from branchline_shared.http.auth import Principal, Role, require_roles

Auditor = Annotated[Principal, require_roles(Role.AUDITOR, Role.ADMIN, Role.SUPERVISOR)]


def get_ledger(request: Request) -> PostgresLedger:
    ledger: PostgresLedger = request.app.state.ledger
    return ledger


LedgerDep = Annotated[PostgresLedger, Depends(get_ledger)]


class LedgerEntry(BaseModel):
    position: int
    event: dict[str, Any]
    appended_at: str
    hash: str
    prev_hash: str


class EntriesPage(BaseModel):
    entries: list[LedgerEntry]
    next_cursor: str | None


class Verification(BaseModel):
    ok: bool
    entries: int
    head: str
    first_bad_position: int | None
    reason: str | None = None


router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/entries", response_model=EntriesPage, summary="Ledger entries in ledger order")
async def list_entries(
    ledger: LedgerDep,
    _: Auditor,
    client_id: str | None = None,
    actor_id: str | None = None,
    branch_id: str | None = None,
    type: str | None = None,
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: AwareDatetime | None = None,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    purpose: Annotated[str | None, Query(max_length=500)] = None,
) -> EntriesPage:
    filters = LedgerFilters(client_id, actor_id, branch_id, type, from_, to)
    after = int(cursor) if cursor else 0
    entries = await ledger.entries(filters, after_position=after, limit=limit)
    next_cursor = str(entries[-1].position) if len(entries) == limit else None
    return EntriesPage(
        entries=[
            LedgerEntry(
                position=e.position,
                event=dict(e.event),
                appended_at=e.appended_at,
                hash=e.hash.hex(),
                prev_hash=e.prev_hash.hex(),
            )
            for e in entries
        ],
        next_cursor=next_cursor,
    )


@router.get("/verify", response_model=Verification, summary="Recompute the whole hash chain")
async def verify(
    ledger: LedgerDep,
    _: Auditor,
    purpose: Annotated[str | None, Query(max_length=500)] = None,
) -> Verification:
    verdict = await verify_ledger(ledger)
    return Verification(
        ok=verdict.ok,
        entries=verdict.entries,
        head=verdict.head,
        first_bad_position=verdict.first_bad_position,
        reason=verdict.reason,
    )


__all__ = ["datetime", "router"]
