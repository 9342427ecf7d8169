"""Intake's HTTP routes: only translate HTTP into use-case calls and outcomes into answers."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.application.outcomes import Accepted, Outcome, Refused
from branchline_intake.application.privacy import readable
from branchline_intake.application.reading import (
    client_of_stream,
    record_client_read,
    stream_in_scope,
)
from branchline_intake.application.submit import IntakeContext, submit_events
from branchline_intake.entrypoints.permissions import type_forbidden
from branchline_intake.entrypoints.problems import problem_of
from branchline_shared.events.bounded import MAX_STREAM_VERSION
from branchline_shared.events.checked_documents import (
    checked_document_validator,
    checked_list_validator,
)
from branchline_shared.events.envelope import Actor, RecordedEvent, SubmittedEvent, Submitter
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import (
    PROBLEM_BASE,
    PROBLEM_JSON,
    Problem,
    field_errors,
    unavailable_problem,
    validation_problem,
)
from branchline_shared.http.responses import FastJSONResponse
from branchline_shared.http.strict_input import PARSED_BODY, ParsedBodyRoute
from branchline_shared.postgres.faults import CommitOutcomeUnknown

MAX_BATCH = 1000
STREAM_ROUTE = "GET /v1/streams/{stream_id}/events"
_UNSCOPED = frozenset({Role.ADMIN})

WRITER_ROLES = frozenset({Role.BRANCH_SYSTEM, Role.RM, Role.SUPERVISOR, Role.ADMIN})
"""Who may send events (``POST /v1/events``, its batch; ``direct_submit`` too)."""
Writer = Annotated[Principal, require_roles(*sorted(WRITER_ROLES))]
Reader = Annotated[
    Principal, require_roles(Role.BRANCH_SYSTEM, Role.RM, Role.SUPERVISOR, Role.ADMIN)
]


Purpose = Annotated[
    str | None,
    Query(max_length=200, description="Why the data is read; recorded with the read (D-11)."),
]


async def get_context(request: Request) -> IntakeContext:
    ctx: IntakeContext = request.app.state.intake
    return ctx


ContextDep = Annotated[IntakeContext, Depends(get_context)]


class AcceptedEvent(BaseModel):
    event_id: str
    stream_id: str
    stream_version: int
    global_position: int


class BatchRequest(BaseModel):
    events: list[dict[str, Any]] = Field(
        description="Submitted events (each validated on its own), at most 1,000."
    )


class BatchResponse(BaseModel):
    results: list[dict[str, Any]] = Field(
        description="One answer per submitted event, in order: the accepted fields with "
        "`status: 202`, or a problem object (`type`, `title`, `status`, `detail`, `rule`?)."
    )


class OutcomeUnknown(BaseModel):
    """503 ``outcome-unknown`` (``application/problem+json``, with ``Retry-After``): the
    connection to the database was lost while the request was committed and the database
    could not be asked whether it was; send the same event again with ``event_id``."""

    type: str = Field(examples=[PROBLEM_BASE + "outcome-unknown"])
    title: str
    status: int
    detail: str
    event_id: str | None = Field(
        default=None,
        description="The id the event may have been stored under (the one sent, or the one "
        "given to an event sent without one): send the event again with it (stored once).",
    )


class NamedEvent(BaseModel):
    index: int = Field(description="The item's index in the batch.")
    event_id: str = Field(description="The id it may have been stored under.")


class BatchOutcomeUnknown(BaseModel):
    """A batch's 503 ``outcome-unknown`` (as :class:`OutcomeUnknown`): every item the
    transaction wrote or recorded as refused, with its id; send them again with those ids."""

    type: str = Field(examples=[PROBLEM_BASE + "outcome-unknown"])
    title: str
    status: int
    detail: str
    events: list[NamedEvent] = Field(
        description="Per item of the batch (by index) the id it may have been stored under; "
        "items refused before the write (invalid, forbidden) stored nothing and are not named."
    )


_UNAVAILABLE = (
    "`unavailable`: nothing was stored, send again; or `outcome-unknown`: the commit was "
    "lost and the database could not be asked, the body names the event ids to send again with"
)


class StreamEvents(BaseModel):
    stream_id: str
    events: list[RecordedEvent]


# The body each route validates is the document the strict input check parsed (#12).
router = APIRouter(prefix="/v1", tags=["intake"], route_class=ParsedBodyRoute)


# A caller's actor and submitter are the same for every request it sends with one token, and
# both are frozen: made once per principal instead of validated on every request (#12).
@functools.lru_cache(maxsize=4096)
def _actor(principal: Principal) -> Actor:
    """Who sent the request (the token's subject), as recorded with a refusal."""
    role = sorted(r.value for r in principal.roles)[0] if principal.roles else "unknown"
    return Actor(id=principal.subject, role=role)


@functools.lru_cache(maxsize=4096)
def _submitter(principal: Principal) -> Submitter:
    """The token's subject, roles and branch: recorded on every accepted event."""
    return Submitter.model_validate(principal.submitter())


def _item_body(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Accepted):
        return {"status": 202, **outcome.body()}
    return problem_of(outcome).body()


async def post_event(event: SubmittedEvent, caller: Writer, request: Request) -> JSONResponse:
    # The group committer is taken from the app, not through a dependency: the busiest route
    # saves a level of FastAPI dependency resolution per request (#12); it cannot fail.
    group: GroupCommitter = request.app.state.group_commit
    forbidden = type_forbidden(event.type, caller)
    if forbidden is not None:
        raise forbidden
    checked = PARSED_BODY in request.scope  # the event is of the document StrictInput passed
    status, body, media_type = await submit_one(group, event, caller, checked=checked)
    return FastJSONResponse(body, status_code=status, media_type=media_type)


async def submit_one(
    group: GroupCommitter, event: SubmittedEvent, caller: Principal, *, checked: bool
) -> tuple[int, dict[str, Any], str]:
    """One event through the group commit, as its answer: status, body and media type (the
    route's, and ``direct_submit``'s). ``checked``: the event is of a document the strict
    input check passed, so its payload is validated as the batch's are (``submit_events``)."""
    try:
        (outcome,) = await group.submit(
            [event], submitted_by=_actor(caller), submitter=_submitter(caller), checked=checked
        )
    except CommitOutcomeUnknown as unknown:
        event_id = event.event_id or unknown.event_id_of(event)
        raise outcome_unknown(unknown, {"event_id": str(event_id)} if event_id else {}) from None
    if isinstance(outcome, Refused):
        problem = problem_of(outcome)
        return problem.status, problem.body(), PROBLEM_JSON
    return 202, outcome.body(), "application/json"


router.add_api_route(
    "/events",
    post_event,
    methods=["POST"],
    status_code=202,
    response_model=AcceptedEvent,
    summary="Submit one event",
    responses={
        409: {"description": "refused by a rule (`rule`) or a version conflict"},
        422: {"description": "invalid event"},
        503: {"model": OutcomeUnknown, "description": _UNAVAILABLE},
    },
    # The same answers come from direct_submit, which serves this route past FastAPI's
    # per-request machinery (#12); declared here for OpenAPI and every other request.
)


# SubmittedEvent's validation without the Python per-field checks the strict input check has
# made for the whole body already (#12; branchline_shared.events.checked_documents).
_CHECKED_SUBMISSION = checked_document_validator(SubmittedEvent)


def _submitted(raw: dict[str, Any]) -> SubmittedEvent:
    """An item of a body the strict input check passed, validated as ``SubmittedEvent``
    validates it: the same object, or, if refused, the same errors (the model itself names
    them; the checked validator may refuse more, e.g. a non-ASCII code the model accepts)."""
    try:
        item: SubmittedEvent = _CHECKED_SUBMISSION.validate_python(raw)
    except ValidationError:
        return SubmittedEvent.model_validate(raw)
    return item


# The same items' validation for the whole batch in one pydantic-core call (#12: a call per
# item was about a microsecond of Python around each item's validation).
_CHECKED_SUBMISSIONS = checked_list_validator(SubmittedEvent)


def _submitted_items(
    raws: list[dict[str, Any]], *, checked: bool
) -> list[SubmittedEvent | ValidationError]:
    """Each item of a batch validated as ``SubmittedEvent``, in order: the event, or the error
    the model names for it; exactly what each item validated alone gives (``_submitted`` in a
    document the strict input check passed, else the model). A checked batch is validated in
    one call; if that refuses any item, every item is validated alone as before, so a refused
    item's errors are the model's own and never abort the others."""
    if checked:
        try:
            items: list[SubmittedEvent | ValidationError] = _CHECKED_SUBMISSIONS.validate_python(
                raws
            )
        except ValidationError:
            pass
        else:
            return items
    validate = _submitted if checked else SubmittedEvent.model_validate
    results: list[SubmittedEvent | ValidationError] = []
    for raw in raws:
        try:
            results.append(validate(raw))
        except ValidationError as exc:
            results.append(exc)
    return results


@router.post(
    "/events:batch",
    response_model=BatchResponse,
    summary="Submit up to 1,000 events; answered per item, in order",
    responses={503: {"model": BatchOutcomeUnknown, "description": _UNAVAILABLE}},
)
async def post_batch(
    ctx: ContextDep, caller: Writer, batch: Annotated[BatchRequest, Body()], request: Request
) -> Response:
    if len(batch.events) > MAX_BATCH:
        raise Problem(
            413,
            "Batch too large",
            f"a batch holds at most {MAX_BATCH} events, this one {len(batch.events)}",
            kind="batch-too-large",
            errors=[{"field": "events", "message": f"at most {MAX_BATCH}", "type": "too_long"}],
        )
    if not batch.events:
        raise validation_problem(
            [{"field": "events", "message": "at least one event", "type": "too_short"}]
        )
    parsed: list[SubmittedEvent] = []
    slots: list[int | dict[str, Any]] = []
    checked = PARSED_BODY in request.scope  # the batch is the document StrictInput passed
    for item in _submitted_items(batch.events, checked=checked):
        if isinstance(item, ValidationError):
            slots.append(validation_problem(field_errors(item.errors())).body())
            continue
        forbidden = type_forbidden(item.type, caller)
        if forbidden is not None:
            slots.append(forbidden.body())
            continue
        parsed.append(item)
        slots.append(len(parsed) - 1)
    try:
        outcomes = (
            await submit_events(
                ctx,
                parsed,
                submitted_by=_actor(caller),
                submitter=_submitter(caller),
                checked=checked,
            )
            if parsed
            else []
        )
    except CommitOutcomeUnknown as unknown:
        raise outcome_unknown(unknown, {"events": _written_as(unknown, parsed, slots)}) from None
    results = [slot if isinstance(slot, dict) else _item_body(outcomes[slot]) for slot in slots]
    for index, result in enumerate(results):
        result["index"] = index
    # Rendered as it is (the answers are plain JSON values built here): FastAPI would dump,
    # validate and serialise the 1,000 answers again through BatchResponse (#12: about
    # 2.3 µs per item); the route's response model still describes them.
    return FastJSONResponse({"results": results})


def outcome_unknown(unknown: CommitOutcomeUnknown, named: dict[str, Any]) -> Problem:
    """The 503 ``outcome-unknown`` of a write whose commit was lost (docs/api.md), naming the
    event id each event may have been stored under: an event sent without one is recognised
    when sent again with it (stored once, answered as it was)."""
    problem = unavailable_problem(unknown)
    problem.extra.update(named)
    return problem


def _written_as(
    unknown: CommitOutcomeUnknown, parsed: list[SubmittedEvent], slots: list[int | dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each batch item the transaction wrote (or recorded refused), by its index in the
    batch, with its event id (items refused before it, e.g. invalid ones, stored nothing)."""
    named: list[dict[str, Any]] = []
    for index, slot in enumerate(slots):
        if isinstance(slot, int):
            item = parsed[slot]
            event_id = item.event_id or unknown.event_id_of(item)
            if event_id is not None:
                named.append({"index": index, "event_id": str(event_id)})
    return named


@router.get(
    "/streams/{stream_id}/events",
    response_model=StreamEvents,
    summary="A stream's events in order",
)
async def get_stream(
    stream_id: Annotated[str, Path(min_length=1, max_length=200)],
    ctx: ContextDep,
    caller: Reader,
    from_version: Annotated[int, Query(ge=1, le=MAX_STREAM_VERSION)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    purpose: Purpose = None,
) -> StreamEvents:
    """A client's stream (``client-<id>``, ``refusals-<id>``) in scope: an RM's own clients, a
    supervisor's team's, a branch system's events of its branch; others are 404 (existence does
    not leak). The read is recorded (who, which stream, why)."""
    not_found = Problem(404, "Not found", f"no stream {stream_id!r}", kind="stream-not-found")
    who = _submitter(caller)
    client_id = client_of_stream(stream_id)
    if client_id is None and not caller.has(Role.ADMIN):
        raise not_found
    if client_id is not None and not await stream_in_scope(ctx, who, client_id):
        raise not_found
    stored = await ctx.store.read_stream(stream_id, from_version=from_version, limit=limit)
    events = [s.event for s in stored]
    if who.branch_id is not None and not caller.has_any(_UNSCOPED):
        events = [e for e in events if e.branch_id == who.branch_id]
    if not events and from_version == 1:
        raise not_found
    events = await readable(ctx.keys, events)  # D-04 restriction
    if client_id is not None:
        await record_client_read(ctx, who, client_id=client_id, route=STREAM_ROUTE, purpose=purpose)
    return StreamEvents(stream_id=stream_id, events=events)


__all__ = ["PROBLEM_BASE", "router"]
