"""Followup's HTTP routes for relationship managers and supervisors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from branchline_followup.adapters import read_models
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import Problem
from branchline_shared.postgres.pool import PgPool

Staff = Annotated[
    Principal, require_roles(Role.RM, Role.SUPERVISOR, Role.ADMIN, Role.BRANCH_SYSTEM)
]


async def get_pool(request: Request) -> PgPool:
    pool: PgPool = request.app.state.pool
    return pool


PoolDep = Annotated[PgPool, Depends(get_pool)]


class ClientView(BaseModel):
    client_id: str
    client_type: str
    rm_id: str
    branch_id: str | None
    lifecycle_stage: str
    registered_at: datetime
    last_event_at: datetime
    last_contact_at: datetime | None


router = APIRouter(prefix="/v1", tags=["clients"])


@router.get("/clients/{client_id}", response_model=ClientView, summary="A client at a glance")
async def get_client(
    client_id: Annotated[str, Path(min_length=1, max_length=128)], pool: PoolDep, _: Staff
) -> ClientView:
    row = await read_models.fetch_client(pool, client_id)
    if row is None:
        raise Problem(
            404, "Not found", f"no client {client_id!r} in the read model", kind="client-not-found"
        )
    return ClientView.model_validate(row, from_attributes=False)
