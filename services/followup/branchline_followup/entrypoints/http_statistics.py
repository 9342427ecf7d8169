"""Regulatory complaint statistics (D-17): ``GET /v1/statistics/complaints``."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from branchline_followup.adapters.page_reads import PostgresPageReads
from branchline_followup.application.service_loop import (
    StatisticsSelection,
    UnknownProfile,
    statistics,
)
from branchline_followup.domain.jurisdictions import statistics_quarter
from branchline_followup.domain.statistics import StatisticsReport, report_csv
from branchline_followup.entrypoints.http_deps import ContextDep
from branchline_followup.entrypoints.problems import problem_of
from branchline_shared.http.auth import Principal, Role, require_roles
from branchline_shared.http.problems import Problem

Compliance = Annotated[Principal, require_roles(Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)]

router = APIRouter(prefix="/v1", tags=["statistics"])


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        "Invalid request",
        f"invalid fields: {field}",
        kind="validation",
        errors=[{"field": field, "message": message, "type": "value_error"}],
    )


@router.get(
    "/statistics/complaints",
    response_model=StatisticsReport,
    summary="D-17 regulatory complaint statistics",
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_complaint_statistics(
    ctx: ContextDep,
    _: Compliance,
    profile: Annotated[str, Query(min_length=1, max_length=64)],
    period_from: Annotated[datetime | None, Query(alias="from")] = None,
    period_to: Annotated[datetime | None, Query(alias="to")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response | StatisticsReport:
    """Complaints received at the branches of ``profile`` in ``[from, to)`` (default: the
    current calendar quarter; a period given by one bound only ends or starts with that
    bound's quarter), counted in the profile's format (``finra_4530_quarterly``,
    ``cn_regulator_periodic`` or ``complaint_statistics``); ``format=csv`` for the rows as CSV.
    The same events always give the same report (resolutions count up to ``min(now, to)``)."""
    for name, value in (("from", period_from), ("to", period_to)):
        if value is not None and value.tzinfo is None:
            raise _invalid(name, "must carry an offset (RFC 3339)")
    policy = ctx.projection.policy
    now = await ctx.clock.now()
    if period_from is None or period_to is None:
        calendar = policy.calendar_for(None)
        # The quarter of the bound given, so the answer does not depend on the day it is
        # asked (``to`` is exclusive: its quarter is the one of the instant before it).
        if period_from is not None:
            anchor = period_from
        elif period_to is not None:
            anchor = period_to - timedelta(microseconds=1)
        else:
            anchor = now
        quarter = statistics_quarter(anchor, calendar)
        next_start = date.fromordinal(quarter.ends_on.toordinal() + 1)
        period_from = period_from or calendar.at_local(quarter.starts_on, time(0))
        period_to = period_to or calendar.at_local(next_start, time(0))
    if period_from >= period_to:
        raise _invalid("from", "must be before to")
    try:
        report = await statistics(
            PostgresPageReads(ctx.pool),
            StatisticsSelection(profile=profile, start=period_from, end=period_to),
            now=now,
            policy=policy,
        )
    except UnknownProfile as exc:
        raise problem_of(exc) from None
    if format == "csv":
        return PlainTextResponse(report_csv(report), media_type="text/csv")
    return report
