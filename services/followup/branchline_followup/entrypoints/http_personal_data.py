"""``GET /v1/clients/{client_id}/personal-data`` and ``GET /v1/staff/{staff_id}/personal-data``:
a D-04 access request answered (admin)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from branchline_followup.application.personal_data import (
    PersonalDataCopy,
    PersonalDataRefused,
    ShownValue,
    StaffDataCopy,
    answer_access_request,
    answer_staff_access_request,
)
from branchline_followup.entrypoints.http_deps import ContextDep, actor_of
from branchline_followup.entrypoints.problems import problem_of
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import validation_problem

Admin = Annotated[Principal, require_roles(Role.ADMIN)]

router = APIRouter(prefix="/v1", tags=["clients"])


class ValueSource(BaseModel):
    event_id: uuid.UUID
    event_type: str
    field: str = Field(description="The payload key (`fields` for the structured fields).")
    sub_key: str | None = Field(description="The personal field under `fields`, if any.")
    occurred_at: datetime


class PersonalValue(BaseModel):
    personal_field: str | None = Field(
        description="name, id_number, phone, ...; null for a free text (a note, a question)."
    )
    value: str
    source: ValueSource


class PersonalDataView(BaseModel):
    """A copy of the client's personal data (D-04), machine-readable, with provenance."""

    client_id: str
    purpose: str
    generated_at: datetime
    access_event_id: uuid.UUID = Field(description="The recorded client.personal_data_accessed.")
    request_event_id: uuid.UUID | None = Field(
        description="The client.data_access_requested this answered, if one was open."
    )
    fields: dict[str, PersonalValue] = Field(description="The latest value of each field.")
    values: list[PersonalValue] = Field(description="Every personal value held, in time order.")


class StaffDataView(BaseModel):
    """A copy of a member of staff's own personal data (D-04), machine-readable, with
    provenance: the free texts of their records sealed under their key."""

    staff_id: str
    purpose: str
    generated_at: datetime
    access_event_id: uuid.UUID = Field(description="The recorded staff.personal_data_accessed.")
    request_event_id: uuid.UUID | None = Field(
        description="The staff.data_access_requested this answered, if one was open."
    )
    values: list[PersonalValue] = Field(description="Every text of theirs held, in time order.")


Purpose = Annotated[
    str,
    Query(
        min_length=1,
        max_length=200,
        description="Why the data is shown (recorded with the access, D-11).",
    ),
]


def _require_purpose(purpose: str) -> None:
    if not purpose.strip():
        raise validation_problem(
            [{"field": "purpose", "message": "state why the data is shown", "type": "missing"}]
        )


def _value(shown: ShownValue) -> PersonalValue:
    source = shown.source
    return PersonalValue(
        personal_field=shown.personal_field,
        value=shown.value,
        source=ValueSource(
            event_id=source.event_id,
            event_type=source.event_type,
            field=source.path,
            sub_key=source.sub_key or None,
            occurred_at=source.occurred_at,
        ),
    )


def _view(copy: PersonalDataCopy) -> PersonalDataView:
    return PersonalDataView(
        client_id=copy.client_id,
        purpose=copy.purpose,
        generated_at=copy.generated_at,
        access_event_id=copy.access_event_id,
        request_event_id=copy.request_event_id,
        fields={name: _value(v) for name, v in copy.current_fields().items()},
        values=[_value(v) for v in copy.values],
    )


@router.get(
    "/clients/{client_id}/personal-data",
    response_model=PersonalDataView,
    summary="The client's personal data in clear, for a D-04 access request (admin)",
    responses={
        404: {"description": "unknown client"},
        409: {"description": "erasure requested: the data is restricted (D-04)"},
        410: {"description": "the data was destroyed (crypto-shredded, D-04)"},
    },
)
async def get_personal_data(
    client_id: Annotated[str, Path(min_length=1, max_length=128)],
    ctx: ContextDep,
    principal: Admin,
    purpose: Purpose,
) -> JSONResponse:
    _require_purpose(purpose)
    try:
        copy = await answer_access_request(
            ctx, client_id, purpose=purpose.strip(), actor=actor_of(principal)
        )
    except PersonalDataRefused as refused:
        raise problem_of(refused) from None
    return _not_stored(_view(copy))


def _not_stored(view: PersonalDataView | StaffDataView) -> JSONResponse:
    """Personal data in clear: no cache along the way may keep it."""
    return JSONResponse(
        view.model_dump(mode="json"), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _staff_view(copy: StaffDataCopy) -> StaffDataView:
    return StaffDataView(
        staff_id=copy.staff_id,
        purpose=copy.purpose,
        generated_at=copy.generated_at,
        access_event_id=copy.access_event_id,
        request_event_id=copy.request_event_id,
        values=[_value(v) for v in copy.values],
    )


@router.get(
    "/staff/{staff_id}/personal-data",
    response_model=StaffDataView,
    tags=["staff"],
    summary="A member of staff's own texts in clear, for a D-04 access request (admin)",
    responses={
        404: {"description": "unknown member of staff"},
        409: {"description": "erasure requested: their texts are restricted (D-04)"},
        410: {"description": "their texts were destroyed (crypto-shredded, D-04)"},
    },
)
async def get_staff_personal_data(
    staff_id: Annotated[str, Path(min_length=1, max_length=128)],
    ctx: ContextDep,
    principal: Admin,
    purpose: Purpose,
) -> JSONResponse:
    _require_purpose(purpose)
    try:
        copy = await answer_staff_access_request(
            ctx, staff_id, purpose=purpose.strip(), actor=actor_of(principal)
        )
    except PersonalDataRefused as refused:
        raise problem_of(refused) from None
    return _not_stored(_staff_view(copy))
