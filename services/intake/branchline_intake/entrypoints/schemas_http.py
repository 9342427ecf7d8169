"""The published event schemas over HTTP: ``GET /v1/schemas`` and one schema per type+version.

Served from the models (the current version of every type,
:mod:`branchline_shared.events.json_schema`): the same documents as the committed ``schemas/``
folder, which a test keeps equal to them. Writing and checking that folder is CLI tooling
(:mod:`branchline_cli.schema_tooling`), not part of any service.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from branchline_shared.events.json_schema import (
    ENVELOPE_PATH,
    SCHEMA_BASE,
    envelope_schema,
    event_schema,
    published_schemas,
)
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import Problem

SCHEMA_JSON = "application/schema+json"

AnyRole = Annotated[
    Principal,
    require_roles(Role.BRANCH_SYSTEM, Role.RM, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN),
]

schemas_router = APIRouter(prefix="/v1/schemas", tags=["schemas"])

_VERSION = re.compile(r"^[1-9][0-9]{0,5}$")


class SchemaEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(description="The event type, e.g. `product.sold`.")
    version: int = Field(description="The payload's schema version.")
    current: bool = Field(description="Whether producers write this version today.")
    schema_id: str = Field(alias="$id", description="The schema's `$id`.")
    url: str = Field(description="Where this service serves it.")


class EnvelopeEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_id: str = Field(alias="$id")
    url: str


class SchemaList(BaseModel):
    schemas: list[SchemaEntry]
    envelope: EnvelopeEntry


@functools.cache
def _listing() -> SchemaList:
    return SchemaList(
        schemas=[
            SchemaEntry(
                type=s.event_type,
                version=s.version,
                current=s.current,
                schema_id=s.schema_id,
                url=f"/v1/schemas/{s.event_type}/v{s.version}",
            )
            for s in published_schemas()
        ],
        envelope=EnvelopeEntry(schema_id=SCHEMA_BASE + ENVELOPE_PATH, url="/v1/schemas/envelope"),
    )


@functools.cache
def _schemas() -> dict[tuple[str, int], dict[str, Any]]:
    return {(s.event_type, s.version): event_schema(s.event_type) for s in published_schemas()}


@schemas_router.get(
    "",
    response_model=SchemaList,
    response_model_by_alias=True,
    summary="List the JSON Schemas of every event type and version",
)
async def list_schemas(_: AnyRole) -> SchemaList:
    return _listing()


@schemas_router.get("/envelope", summary="The JSON Schema of the event envelope")
async def get_envelope_schema(_: AnyRole) -> JSONResponse:
    return JSONResponse(envelope_schema(), media_type=SCHEMA_JSON)


@schemas_router.get(
    "/{event_type}/v{version}",
    summary="The JSON Schema of one event type's data at one version",
    responses={404: {"description": "No such type or version (problem+json)."}},
)
async def get_event_schema(event_type: str, version: str, _: AnyRole) -> JSONResponse:
    schema = _schemas().get((event_type, int(version))) if _VERSION.match(version) else None
    if schema is None:
        raise Problem(
            404,
            "Not found",
            f"no schema for {event_type!r} v{version}; GET /v1/schemas lists them",
            kind="schema-not-found",
        )
    return JSONResponse(schema, media_type=SCHEMA_JSON)
