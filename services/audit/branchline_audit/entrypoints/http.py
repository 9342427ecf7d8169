"""The audit API for auditors and compliance officers (docs/api.md, "Audit API").

Every request here is itself recorded in the ledger as an ``audit.read`` entry (who, which
endpoint and filters, the stated ``?purpose=``, when: D-11) before it is answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from branchline_audit.application.checkpointing import latest_covering
from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.application.exporting import (
    ExportsBusy,
    ExportSlots,
    StartedExport,
    start_export,
)
from branchline_audit.application.ports import VerifySlotLost, VerifySlots
from branchline_audit.application.proofs import ProofRefused, consistency, inclusion
from branchline_audit.application.querying import views_of
from branchline_audit.application.recording import record_read
from branchline_audit.application.verifying import verify_ledger_apart
from branchline_audit.domain.filters import LedgerFilters
from branchline_audit.entrypoints.problems import problem_of
from branchline_shared.events.bounded import MAX_SAFE_INTEGER, Instant
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import Problem, validation_problem

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499
"""What a verify whose client went away answers (nobody reads it; the access log does)."""


async def until_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None once the client has gone away: ``work`` is then cancelled
    and awaited (whatever it started is stopped before this returns). The request's body is
    read already, so the next ASGI message is the disconnect."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()


def _verifies(limit: int) -> str:
    return "1 verify runs" if limit == 1 else f"{limit} verifies run"


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


Auditor = Annotated[Principal, require_roles(Role.AUDITOR)]
"""The trail's content (entries, proofs, exports) is for auditors only: not for supervisors,
whose own actions it records (separation of duties), nor for admins, who run the system."""
Verifier = Annotated[Principal, require_roles(Role.AUDITOR, Role.ADMIN)]
"""The trail's integrity (verify, checkpoints, the public key) holds no client data: an admin
checks it after an incident or a restore without reading any entry."""
Purpose = Annotated[
    str | None,
    Query(max_length=500, description="Why the trail is read; recorded with the read (D-11)."),
]


def get_audit(request: Request) -> AuditContext:
    audit: AuditContext = request.app.state.audit
    return audit


def _reader(principal: Principal, purpose: str | None) -> TrailReader:
    return TrailReader(
        subject=principal.subject,
        roles=frozenset(r.value for r in principal.roles),
        purpose=purpose,
    )


def get_reader(principal: Auditor, purpose: Purpose = None) -> TrailReader:
    return _reader(principal, purpose)


def get_verifier(principal: Verifier, purpose: Purpose = None) -> TrailReader:
    return _reader(principal, purpose)


AuditDep = Annotated[AuditContext, Depends(get_audit)]
ReaderDep = Annotated[TrailReader, Depends(get_reader)]
VerifierDep = Annotated[TrailReader, Depends(get_verifier)]


def get_filters(
    client_id: Annotated[str | None, Query(max_length=128)] = None,
    actor_id: Annotated[str | None, Query(max_length=128)] = None,
    branch_id: Annotated[str | None, Query(max_length=128)] = None,
    type: Annotated[
        str | None,
        Query(max_length=64, description="An event type, or a family such as `followup.*`."),
    ] = None,
    from_: Annotated[
        Instant | None, Query(alias="from", description="occurred_at from (inclusive)")
    ] = None,
    to: Annotated[Instant | None, Query(description="occurred_at to (exclusive)")] = None,
) -> LedgerFilters:
    if from_ is not None and to is not None and from_ > to:
        raise validation_problem(
            [{"field": "from", "message": "must not be after `to`", "type": "value_error"}],
            "`from` is after `to`",
        )
    return LedgerFilters(client_id, actor_id, branch_id, type, from_, to)


FiltersDep = Annotated[LedgerFilters, Depends(get_filters)]


class LedgerEntry(BaseModel):
    position: int
    event: dict[str, Any]
    view: str
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
    checkpoints_checked: int = 0
    bad_checkpoint: int | None = None
    bad_positions: list[int] = []
    """Every bad position (the first 1,000): verification goes on past a bad entry."""
    bad_count: int = 0


class InclusionProofBody(BaseModel):
    position: int
    leaf_index: int
    leaf_hash: str
    tree_size: int
    inclusion_path: list[str]
    checkpoint: str


class CheckpointBody(BaseModel):
    tree_size: int
    root_hash: str
    checkpoint: str


class ConsistencyBody(BaseModel):
    first: int
    second: int
    consistency_path: list[str]


class PublicKey(BaseModel):
    verifier_key: str


router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/entries", response_model=EntriesPage, summary="Ledger entries in ledger order")
async def list_entries(
    audit: AuditDep,
    reader: ReaderDep,
    filters: FiltersDep,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EntriesPage:
    await record_read(
        audit, reader, "GET /v1/audit/entries", {**filters.as_dict(), "cursor": cursor}
    )
    after = int(cursor) if cursor else 0
    page = await audit.ledger.entries(filters, after_position=after, limit=limit)
    views = await views_of(audit, page, reader)
    return EntriesPage(
        entries=[
            LedgerEntry(
                position=v.stored.entry.position,
                event=v.event,
                view=v.view.value,
                appended_at=v.stored.entry.appended_at,
                hash=v.stored.entry.hash.hex(),
                prev_hash=v.stored.entry.prev_hash.hex(),
            )
            for v in views
        ],
        next_cursor=str(page[-1].entry.position) if len(page) == limit else None,
    )


@router.get(
    "/entries/{position}/proof",
    response_model=InclusionProofBody,
    summary="Inclusion proof of an entry against the latest signed checkpoint (RFC 9162)",
)
async def entry_proof(
    audit: AuditDep, reader: ReaderDep, position: Annotated[int, Path(ge=1, le=MAX_SAFE_INTEGER)]
) -> InclusionProofBody:
    await record_read(
        audit, reader, "GET /v1/audit/entries/{position}/proof", {"position": position}
    )
    try:
        proof = await inclusion(audit, position)
    except ProofRefused as error:
        raise problem_of(error) from None
    return InclusionProofBody(
        position=position,
        leaf_index=position - 1,
        leaf_hash=proof.leaf_hash.hex(),
        tree_size=proof.checkpoint.tree_size,
        inclusion_path=[p.hex() for p in proof.path],
        checkpoint=proof.checkpoint.note,
    )


@router.get(
    "/checkpoints/latest", response_model=CheckpointBody, summary="The latest signed checkpoint"
)
async def latest_checkpoint(audit: AuditDep, reader: VerifierDep) -> CheckpointBody:
    await record_read(audit, reader, "GET /v1/audit/checkpoints/latest", {})
    checkpoint = await latest_covering(audit, 0)
    return CheckpointBody(
        tree_size=checkpoint.tree_size,
        root_hash=checkpoint.root_hash.hex(),
        checkpoint=checkpoint.note,
    )


@router.get(
    "/checkpoints/{first}/consistency/{second}",
    response_model=ConsistencyBody,
    summary="Consistency proof between two signed checkpoints (RFC 9162)",
)
async def checkpoint_consistency(
    audit: AuditDep,
    reader: VerifierDep,
    first: Annotated[int, Path(ge=0, le=MAX_SAFE_INTEGER)],
    second: Annotated[int, Path(ge=0, le=MAX_SAFE_INTEGER)],
) -> ConsistencyBody:
    await record_read(
        audit,
        reader,
        "GET /v1/audit/checkpoints/{a}/consistency/{b}",
        {"first": first, "second": second},
    )
    try:
        proof = await consistency(audit, first, second)
    except ProofRefused as error:
        raise problem_of(error) from None
    return ConsistencyBody(first=first, second=second, consistency_path=[p.hex() for p in proof])


@router.get(
    "/public-key",
    response_model=PublicKey,
    summary="The log's verifier key (C2SP signed-note form)",
)
async def public_key(audit: AuditDep, reader: VerifierDep) -> PublicKey:
    await record_read(audit, reader, "GET /v1/audit/public-key", {})
    return PublicKey(verifier_key=audit.signer.verifier_key_string())


@router.get(
    "/verify",
    response_model=Verification,
    summary="Recompute the hash chain and check every signed checkpoint",
)
async def verify(request: Request, audit: AuditDep, reader: VerifierDep) -> Any:
    """``audit_max_concurrent_verifies`` (1) at a time across every audit API process on the
    database (their segments take a process each and read the whole ledger): one more is 429
    with ``Retry-After``, recorded nowhere. The limit is held in PostgreSQL (advisory locks,
    :mod:`branchline_audit.adapters.verify_slots`), so it holds however many uvicorn
    processes or hosts serve the API. The chain is checked in processes apart from this event
    loop (#12), stopped when the client goes away; the slot is freed with them. A slot lost
    while the verify runs stops it (503 ``verify-slot-lost``): it would otherwise run on
    beside one that took the freed slot."""
    slots: VerifySlots = request.app.state.verify_slots
    try:
        async with slots.held() as held:
            if not held:
                raise Problem(
                    429,
                    "A verify is running",
                    f"{_verifies(slots.limit)} at a time per audit deployment (every audit API "
                    "process on this database); retry when it has finished",
                    kind="too-many-verifies",
                    headers={"Retry-After": "10"},
                )
            await record_read(audit, reader, "GET /v1/audit/verify", {})
            verdict = await until_disconnected(
                request,
                verify_ledger_apart(
                    audit.ledger,
                    audit.checkpoints,
                    verifier=audit.signer.verifier(),
                    origin=audit.origin,
                    segments=request.app.state.verify_segments,
                ),
            )
    except VerifySlotLost as lost:
        raise Problem(
            503,
            "The verify was stopped",
            f"The verify's slot was lost while it ran ({lost}); it was stopped, no verdict "
            "was reached; retry",
            kind="verify-slot-lost",
            headers={"Retry-After": "10"},
        ) from None
    if verdict is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return Verification(
        ok=verdict.ok,
        entries=verdict.entries,
        head=verdict.head,
        first_bad_position=verdict.first_bad_position,
        reason=verdict.reason,
        checkpoints_checked=verdict.checkpoints_checked,
        bad_checkpoint=verdict.bad_checkpoint,
        bad_positions=list(verdict.bad_positions),
        bad_count=verdict.bad_count,
    )


@router.get(
    "/export",
    summary="Stream entries plus a signed manifest (verify offline: branchline audit "
    "verify-export)",
    response_class=StreamingResponse,
)
async def export(
    request: Request,
    audit: AuditDep,
    reader: ReaderDep,
    filters: FiltersDep,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    """At most ``audit_max_concurrent_exports`` run at once (a full export keeps a database
    connection and the CPU busy): one more is 429 with ``Retry-After``, recorded nowhere."""
    return export_response(
        await started_export(request, audit, reader, filters, format, route="GET /v1/audit/export")
    )


async def started_export(
    request: Request,
    audit: AuditContext,
    reader: TrailReader,
    filters: LedgerFilters,
    content: Literal["jsonl", "csv"],
    *,
    route: str,
) -> StartedExport:
    """:func:`start_export` with the app's slots; all slots taken is 429 (API and console)."""
    slots: ExportSlots = request.app.state.export_slots
    try:
        return await start_export(audit, slots, reader, filters, content, route=route)
    except ExportsBusy as busy:
        raise Problem(
            429,
            "Too many exports",
            str(busy),
            kind="too-many-exports",
            headers={"Retry-After": "5"},
        ) from None


def export_response(started: StartedExport) -> StreamingResponse:
    return StreamingResponse(
        started.lines,
        media_type=started.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{started.filename}"',
            "Cache-Control": "no-store",
        },
    )
