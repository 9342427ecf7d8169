"""``POST /v1/events`` as a plain ASGI handler (#12), called by the service edge after its
steps (limits, strict input, correlation id, metrics) instead of the app's own layers.

The route is the busiest of all and its work is small (a token, one body model, one group
commit), yet FastAPI and Starlette wrapped it in their general machinery on every request:
the exception middleware, the exit-stack middleware, route matching over every route, the
request object and FastAPI's request handler (together about a sixth of intake's CPU per
event). This handler does exactly what the route does, in its order:

1. the writer's token (401, the same checks: ``auth.scope_principal``), then its roles (403);
2. the body, the document the strict input check parsed, validated as ``SubmittedEvent`` (the
   checked validator the batch uses, and on a refusal the model itself, as FastAPI calls it:
   the same errors, with FastAPI's ``body`` location, answered by the app's own handler);
3. the event type for this caller (403), then the group commit, answered with orjson.

It takes a request only when the strict check parsed its JSON body and the content type is
one FastAPI reads as JSON; anything else (no body, another content type, a body that is not
JSON) goes to the app, where FastAPI's route answers as before. An exception is answered by
the app's own exception handlers, as the exception middleware would (``Exception`` itself is
left to the server-error middleware above the edge, as for every route).
``tests/integration/test_intake_direct_route.py`` sends the same good and bad requests both
ways and compares status, the headers that matter and bodies.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.entrypoints.http import WRITER_ROLES, router, submit_one
from branchline_intake.entrypoints.permissions import type_forbidden
from branchline_shared.events.checked_documents import checked_document_validator
from branchline_shared.events.envelope import SubmittedEvent
from branchline_shared.http.auth import Principal, TokenCodec, role_refusal, scope_principal
from branchline_shared.http.service_app import serve_directly
from branchline_shared.http.strict_input import PARSED_BODY

PATH = "/v1/events"

# What FastAPI validates a body parameter with (``ModelField.validate``: a TypeAdapter of the
# annotation, ``from_attributes=True``), used when the checked validator refuses, so that the
# errors are the model's own.
_MODEL = TypeAdapter(SubmittedEvent)
# The batch's validator of a body the strict check passed (``http._submitted``): the same
# object as the model's when it accepts; it may refuse more, and then the model decides.
_CHECKED = checked_document_validator(SubmittedEvent)
_ABSENT = object()


def install_direct_submit(app: FastAPI) -> None:
    """Serve ``POST /v1/events`` of ``app`` (which includes ``router``) by
    :func:`direct_submit`; the route stays declared, and is what the scope names."""
    route = next(
        r
        for r in router.routes
        if isinstance(r, APIRoute) and r.path == PATH and "POST" in (r.methods or ())
    )

    async def handler(scope: Scope, receive: Receive, send: Send, general: ASGIApp) -> None:
        await direct_submit(route, scope, receive, send, general)

    serve_directly(app, "POST", PATH, handler)


async def direct_submit(
    route: APIRoute, scope: Scope, receive: Receive, send: Send, general: ASGIApp
) -> None:
    document = scope.get(PARSED_BODY, _ABSENT)
    if document is _ABSENT or not _json_content_type(scope["headers"]):
        await general(scope, receive, send)  # FastAPI's own way, as before
        return
    # What Starlette's router leaves in the scope for the matched route (the metrics and the
    # access log name its template).
    scope["route"] = route
    scope["endpoint"] = route.endpoint
    scope["path_params"] = {}
    try:
        status, body, media_type = await _answer(scope, document)
    except Exception as exc:
        await _handled(scope, receive, send, exc)
        return
    content = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(content)).encode()),
                (b"content-type", media_type.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def _answer(scope: Scope, document: Any) -> tuple[int, dict[str, Any], str]:
    state = scope["app"].state
    codec: TokenCodec = state.token_codec
    caller: Principal = scope_principal(scope, codec)  # 401
    refused = role_refusal(caller, WRITER_ROLES)  # 403
    if refused is not None:
        raise refused
    event = _validated(document)  # 422
    forbidden = type_forbidden(event.type, caller)  # 403
    if forbidden is not None:
        raise forbidden
    group: GroupCommitter = state.group_commit
    # The document is the one the strict check passed (this handler takes no other): its
    # payload is validated as the batch's are, without the checks made already (#12).
    return await submit_one(group, event, caller, checked=True)


def _validated(document: Any) -> SubmittedEvent:
    if isinstance(document, dict):
        try:
            event: SubmittedEvent = _CHECKED.validate_python(document)
        except ValidationError:
            pass  # the model decides, and names the errors
        else:
            return event
    try:
        return _MODEL.validate_python(document, from_attributes=True)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=document) from None


async def _handled(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """``exc`` answered by the app's handler for its class, as Starlette's exception
    middleware looks it up (the nearest class first); ``Exception`` itself and anything
    without a handler goes on up to the server-error middleware, as from any route."""
    handlers = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        handler = handlers.get(cls)
        if handler is not None:
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
    raise exc


def _json_content_type(headers: list[tuple[bytes, bytes]]) -> bool:
    """A content type FastAPI parses as JSON too (``application/json``, ``application/*+json``:
    its rule, strict about a missing header), in its plain form; any other goes the general
    way, where FastAPI decides as it always did. The first header, as Starlette reads it."""
    content_type = b""
    for name, value in headers:
        if name == b"content-type":
            content_type = value
            break
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json") and kind.count(b"/") == 1
    )
