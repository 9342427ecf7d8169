"""Legal holds (D-11) through the audit API: placed and lifted as recorded ledger entries by an
auditor or admin (who: the token's subject; why: a closed reason code and a case reference),
listed for compliance. Every request is recorded as an ``audit.read`` too."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, model_validator

from branchline_audit.application.holds import HoldActor, lift_hold, list_holds, place_hold
from branchline_audit.application.recording import record_read
from branchline_audit.domain.relationships import HoldRefused, LegalHold, hold_subject
from branchline_audit.entrypoints.http import AuditDep, VerifierDep
from branchline_audit.entrypoints.problems import problem_of
from branchline_shared.events.envelope import Identifier
from branchline_shared.events.vocabulary import LegalHoldReason, LegalHoldReleaseReason
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import validation_problem

HoldKeeper = Annotated[Principal, require_roles(Role.AUDITOR, Role.ADMIN)]

router = APIRouter(prefix="/v1/audit", tags=["legal holds"])


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlaceHold(_Body):
    """A hold on a client's records, or on a member of staff's own texts (``staff_id``: their
    key ``#staff/<staff_id>`` is not destroyed while it stands, D-04, D-11)."""

    client_id: Identifier | None = None
    staff_id: Identifier | None = None
    hold_id: Identifier
    reason: LegalHoldReason
    case_reference: Identifier | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> PlaceHold:
        if (self.client_id is None) == (self.staff_id is None):
            raise ValueError("exactly one subject is required: client_id or staff_id")
        return self

    @property
    def subject(self) -> str:
        return hold_subject(client_id=self.client_id, staff_id=self.staff_id)


class LiftHold(_Body):
    reason: LegalHoldReleaseReason


class HoldView(BaseModel):
    hold_id: str
    client_id: str
    """The held subject: a client's id, or ``#staff/<staff_id>`` for a member of staff."""
    staff_id: str | None = None
    """The member of staff held, for a hold on one."""
    reason: str
    case_reference: str | None
    placed_by: str | None
    placed_at: datetime
    position: int
    """The ledger position of the ``audit.legal_hold_placed`` entry."""


class HoldChange(BaseModel):
    hold: HoldView
    position: int
    """The ledger position of the entry this request recorded."""


class HoldList(BaseModel):
    holds: list[HoldView]


def _view(hold: LegalHold) -> HoldView:
    return HoldView(**hold.__dict__, staff_id=hold.staff_id)


@router.post(
    "/legal-holds",
    response_model=HoldChange,
    status_code=201,
    summary="Place a legal hold on a client's records or a member of staff's (D-11)",
)
async def post_hold(
    body: PlaceHold, audit: AuditDep, reader: VerifierDep, principal: HoldKeeper
) -> HoldChange:
    await record_read(
        audit,
        reader,
        "POST /v1/audit/legal-holds",
        {"client_id": body.client_id, "staff_id": body.staff_id},
    )
    try:
        hold, position = await place_hold(
            audit.ledger,
            audit.clock,
            actor=HoldActor(principal.subject, _role(principal)),
            client_id=body.subject,
            hold_id=body.hold_id,
            reason=body.reason.value,
            case_reference=body.case_reference,
        )
    except HoldRefused as error:
        raise problem_of(error) from None
    return HoldChange(hold=_view(hold), position=position)


@router.post(
    "/legal-holds/{hold_id}/lift",
    response_model=HoldChange,
    summary="Lift a standing legal hold (D-11)",
)
async def post_lift(
    hold_id: Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")],
    body: LiftHold,
    audit: AuditDep,
    reader: VerifierDep,
    principal: HoldKeeper,
) -> HoldChange:
    await record_read(
        audit, reader, "POST /v1/audit/legal-holds/{hold_id}/lift", {"hold_id": hold_id}
    )
    try:
        hold, position = await lift_hold(
            audit.ledger,
            audit.clock,
            actor=HoldActor(principal.subject, _role(principal)),
            hold_id=hold_id,
            reason=body.reason.value,
        )
    except HoldRefused as error:
        raise problem_of(error) from None
    return HoldChange(hold=_view(hold), position=position)


@router.get("/legal-holds", response_model=HoldList, summary="Standing legal holds (D-11)")
async def get_holds(
    audit: AuditDep,
    reader: VerifierDep,
    client_id: Annotated[str | None, Query(max_length=128)] = None,
    staff_id: Annotated[str | None, Query(max_length=128)] = None,
) -> HoldList:
    await record_read(
        audit,
        reader,
        "GET /v1/audit/legal-holds",
        {"client_id": client_id, "staff_id": staff_id},
    )
    if client_id is not None and staff_id is not None:
        raise validation_problem(
            [{"field": "staff_id", "message": "not with client_id", "type": "value_error"}],
            "a hold names one subject: ask for client_id or staff_id, not both",
        )
    subject = client_id if staff_id is None else hold_subject(client_id=None, staff_id=staff_id)
    return HoldList(holds=[_view(h) for h in await list_holds(audit.ledger, subject)])


def _role(principal: Principal) -> str:
    return "admin" if Role.ADMIN in principal.roles else "auditor"
