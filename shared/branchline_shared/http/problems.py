"""RFC 9457 problem details: every error of every service is ``application/problem+json``
with ``type``, ``title``, ``status``, ``detail`` and, where a rule of docs/rules.md refused the
request, ``rule``; validation errors list the offending fields."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from branchline_shared.eventstore.ports import ConcurrencyError
from branchline_shared.field_issues import field_issues
from branchline_shared.logging_setup import describe_error
from branchline_shared.postgres.faults import (
    DATABASE_FAULT_CLASSES,
    CommitOutcomeUnknown,
    fault_detail,
    is_transient_database_fault,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://branchline.dev/problems/"
RETRY_AFTER_S = "2"


class Problem(Exception):
    """Raised anywhere in a request: becomes a problem+json response."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str,
        rule: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind
        self.rule = rule
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.rule:
            body["rule"] = self.rule
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem.body(),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic errors as ``[{field, message, type}]`` (see :func:`field_issues`)."""
    return [issue.as_dict() for issue in field_issues(errors)]


def validation_problem(errors: list[dict[str, Any]], detail: str | None = None) -> Problem:
    fields = ", ".join(e["field"] for e in errors)
    return Problem(
        422,
        "Invalid request",
        detail or f"invalid fields: {fields}",
        kind="validation",
        errors=errors,
    )


def log_fault(exc: BaseException) -> None:
    log.warning("a database fault; answered 503", extra={"error": describe_error(exc)})


def unavailable_problem(exc: BaseException) -> Problem:
    """A transient database fault (docs/reliability.md, "A database fault"): 503 with
    ``Retry-After``; the request's transaction was rolled back, so it may be sent again (an
    intake event with the same ``event_id`` is stored once)."""
    log_fault(exc)
    unknown = isinstance(exc, CommitOutcomeUnknown)
    return Problem(
        503,
        "Outcome unknown" if unknown else "Service unavailable",
        fault_detail(exc),
        # Not "unavailable", whose promise is that nothing was stored (docs/api.md).
        kind="outcome-unknown" if unknown else "unavailable",
        headers={"Retry-After": RETRY_AFTER_S},
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(
                Problem(
                    400,
                    "Malformed JSON",
                    "the request body is not valid JSON",
                    kind="malformed-json",
                    errors=field_errors(errors),
                )
            )
        return problem_response(validation_problem(field_errors(errors)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
        return problem_response(
            Problem(
                exc.status_code,
                titles.get(exc.status_code, "HTTP error"),
                str(exc.detail),
                kind=f"http-{exc.status_code}",
                headers=dict(exc.headers) if exc.headers else None,
            )
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(
            Problem(
                500,
                "Internal error",
                "the server failed; nothing was half-written",
                kind="internal",
            )
        )

    @app.exception_handler(ConcurrencyError)
    async def _concurrent(_: Request, exc: ConcurrencyError) -> JSONResponse:
        # A concurrent writer of the same streams or event ids won every run of the request
        # (a lock cycle broken each time, an id taken meanwhile): each run was rolled back, so
        # nothing was stored, and sent again it is decided against what that writer stored.
        log_fault(exc)
        return problem_response(
            Problem(
                503,
                "Service unavailable",
                "the request met concurrent writes of the same records on every run; "
                "nothing was stored, send the request again",
                kind="unavailable",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        )

    # Starlette finds a handler by the exception's class and its bases, so every class of the
    # shared list gets this one; a subclass that is not transient (a codec's refusal of a
    # value under InterfaceError) is answered as the bug it is.
    async def _database_fault(request: Request, exc: Exception) -> JSONResponse:
        if not is_transient_database_fault(exc):
            return await _unexpected(request, exc)
        return problem_response(unavailable_problem(exc))

    for fault in DATABASE_FAULT_CLASSES:
        app.add_exception_handler(fault, _database_fault)
