"""The supervisor's pages: the team board (open, due soon, overdue and escalated work per
RM), reassignment, the D-12 quality dashboard with its CSV download, and the refusals of
their team's clients."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from branchline_followup.adapters.console_queries import BoardRow, team_board
from branchline_followup.adapters.console_refusals import RefusalSelection, refusals
from branchline_followup.adapters.page_reads import PostgresPageReads
from branchline_followup.application.actions import TaskRefused, reassign_task
from branchline_followup.application.queries import QualitySelection, quality
from branchline_followup.domain import FollowupPolicy, QualityReport
from branchline_followup.entrypoints.console.rm_pages import (
    LABEL,
    QUALITY_FIELDS,
    REFUSAL_FIELDS,
    TRAIL_MAX,
    TRAIL_SEPARATOR,
    FormInvalid,
    TooLong,
    bad_cursor,
    check_lengths,
    cursor_valid,
    free_text,
    landing_address,
    parse_trail,
    render_day,
    work_filters,
)
from branchline_followup.entrypoints.console.vocabulary import DIMENSIONS
from branchline_followup.entrypoints.http_deps import (
    ContextDep,
    actor_of,
    staff_of,
    submitter_of,
    task_in_scope,
    task_scope_filter,
)
from branchline_shared.console.i18n import N_
from branchline_shared.console.refill import too_long_fields
from branchline_shared.console.web import (
    CsrfChecked,
    ResendSafe,
    console_roles,
    locale_of,
    site_of,
)
from branchline_shared.http.auth import Principal, Role

RULE_ID = r"^D-[0-9]{2}[a-z]?$"
Overseer = Annotated[Principal, console_roles(Role.SUPERVISOR, Role.ADMIN)]

BOARD_DONE_WINDOW = timedelta(days=1)
DEFAULT_PERIOD_DAYS = 30
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
STAFF_ID_CHARACTERS = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
"""A staff id's characters, any length: its length is the form's own check (check_lengths),
marked on the task's form (#12)."""

router = APIRouter(prefix="/console", include_in_schema=False)


def team_of(rows: list[BoardRow], principal: Principal, policy: FollowupPolicy) -> list[BoardRow]:
    """A supervisor's team: the staff whose escalations go to them (an admin sees all)."""
    if Role.ADMIN in principal.roles:
        return rows
    return [
        r
        for r in rows
        if r.assignee == principal.subject or policy.supervisor_of(r.assignee) == principal.subject
    ]


@router.get("/team")
async def board(request: Request, ctx: ContextDep, principal: Overseer) -> Response:
    now = await ctx.clock.now()
    policy = ctx.projection.policy
    rows = await team_board(
        ctx.pool,
        now=now,
        due_soon_until=now + policy.due_soon_window,
        done_since=now - BOARD_DONE_WINDOW,
    )
    return site_of(request).render(
        request, "team.html", {"rows": team_of(rows, principal, policy), "now": now}
    )


@router.post("/tasks/{task_id}/reassign", dependencies=[CsrfChecked, ResendSafe])
async def reassign(
    request: Request,
    task_id: uuid.UUID,
    ctx: ContextDep,
    principal: Overseer,
    # bounded by check_lengths (and the edge's body limit)
    assignee: Annotated[str, Form(pattern=STAFF_ID_CHARACTERS)],
    reason: Annotated[str, Form()] = "",
    f_status: Annotated[str, Form(max_length=16)] = "open",
    f_kind: Annotated[str, Form(max_length=64)] = "",
    f_client_id: Annotated[str, Form(max_length=128)] = "",
    f_assignee: Annotated[str, Form(max_length=128)] = "",
    f_cursor: Annotated[str, Form(max_length=512)] = "",
    f_back: Annotated[str, Form(max_length=TRAIL_MAX * 513)] = "",
) -> Response:
    """``followup.reassigned`` through the JSON route's use case; then the page the form was
    on (its filters, ``f_cursor`` and ``f_back``, checked first as the complete form's are)
    (#12)."""
    site = site_of(request)
    gettext = site.gettext(request)
    filters = work_filters(f_status, f_kind, f_client_id, f_assignee)
    if f_cursor and not (cursor_valid(f_cursor) and parse_trail(f_back) is not None):
        return bad_cursor(request, filters)
    back = f_back if f_cursor else ""
    notice = error = None
    marked: tuple[uuid.UUID, frozenset[str]] | None = None
    try:
        check_lengths(assignee=assignee, reason=reason)
        await reassign_task(
            ctx,
            task_id,
            actor=actor_of(principal),
            assignee=assignee,
            reason=free_text(reason, LABEL),
            may_act=lambda current: (
                task_in_scope(principal, staff_of(request), current)
                and task_in_scope(principal, staff_of(request), assignee)
            ),
            submitted_by=submitter_of(principal),
        )
        notice = gettext(N_("Task given to %(assignee)s.")) % {"assignee": assignee}
    except FormInvalid as invalid:
        error = gettext(invalid.message)
        marked = (task_id, invalid.too_long) if invalid.too_long else None
    except TaskRefused as refused:
        error = gettext(N_("The task was not reassigned: %(detail)s")) % {"detail": refused.detail}
    page = f_cursor or None
    plain = request.headers.get("hx-request") != "true"
    if plain and error is None:
        trail = back.split(TRAIL_SEPARATOR) if back else []
        landing = await landing_address(
            request, ctx, principal, filters, f_cursor, trail, given=assignee
        )
        return site.redirect(request, landing)
    return await render_day(
        request,
        ctx,
        principal,
        filters,
        notice=notice,
        error=error,
        # a plain post's refusal is a 422 page, as the complete form's (htmx swaps only a 2xx)
        status=422 if plain else 200,
        cursor=page,
        back=back,
        task_marked=marked,
    )


def _period(
    zone: Any, now: datetime, start: str | None, end: str | None
) -> tuple[datetime, datetime]:
    """``[from, to)`` from two dates (``YYYY-MM-DD``) read in the branch's zone; default the
    last 30 days."""

    def day(value: str | None) -> datetime | None:
        if not value:
            return None
        try:
            parsed = datetime.strptime(value, "%Y-%m-%d").date()  # noqa: DTZ007 - a date
        except ValueError:
            return None
        return datetime.combine(parsed, time(0), tzinfo=zone)

    stop = day(end)
    stop = stop + timedelta(days=1) if stop else now
    begin = day(start) or stop - timedelta(days=DEFAULT_PERIOD_DAYS)
    if begin >= stop:
        begin = stop - timedelta(days=DEFAULT_PERIOD_DAYS)
    return begin, stop


async def _report(
    request: Request,
    ctx: ContextDep,
    branch_id: str | None,
    rm_id: str | None,
    start: str | None,
    end: str | None,
) -> tuple[QualitySelection, QualityReport, datetime]:
    now = await ctx.clock.now()
    zone = site_of(request).formatter(locale_of(request)).zone(branch_id)
    begin, stop = _period(zone, now, start, end)
    selection = QualitySelection(
        branch_id=branch_id or None, rm_id=rm_id or None, start=begin, end=stop
    )
    report = await quality(
        PostgresPageReads(ctx.pool), selection, now=now, policy=ctx.projection.policy
    )
    return selection, report, now


@router.get("/quality")
async def quality_page(
    request: Request,
    ctx: ContextDep,
    _: Overseer,
    branch_id: Annotated[str | None, Query(max_length=128)] = None,
    rm_id: Annotated[str | None, Query(max_length=128)] = None,
    start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    too_long: TooLong = None,
) -> Response:
    """D-12's measures for the form's branch, RM and days; ``too_long``: the fields a
    refused request sent too long (``rm_pages.form_page``), marked on the form (#12)."""
    selection, report, _now = await _report(request, ctx, branch_id, rm_id, start, end)
    site = site_of(request)
    gettext = site.gettext(request)
    satisfaction = [(gettext(DIMENSIONS[d]), getattr(report.satisfaction, d)) for d in DIMENSIONS]
    compliance = [(c.rule, None if c.rate is None else c.rate * 100) for c in report.sla_compliance]
    zone = site.formatter(locale_of(request)).zone(branch_id)
    # The form shows days in the branch's zone; "to" is inclusive, the period's end is not.
    first_day = selection.start.astimezone(zone).date()
    last_day = (selection.end - timedelta(microseconds=1)).astimezone(zone).date()
    return site.render(
        request,
        "quality.html",
        {
            "selection": selection,
            "report": report,
            "satisfaction": satisfaction,
            "compliance": compliance,
            "form": {
                "branch_id": branch_id or "",
                "rm_id": rm_id or "",
                "from": first_day.isoformat(),
                "to": last_day.isoformat(),
            },
            "too_long": too_long_fields(too_long, QUALITY_FIELDS),
            "max_length": QUALITY_FIELDS,
        },
    )


def spreadsheet_safe(text: str) -> str:
    """A typed-in value that a spreadsheet would run as a formula is written as text."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def quality_rows(selection: QualitySelection, report: QualityReport) -> list[list[str]]:
    """The D-12 measures as (measure, key, value) rows: one table, easy to load anywhere."""
    scope = [
        spreadsheet_safe(selection.branch_id or ""),
        spreadsheet_safe(selection.rm_id or ""),
        selection.start.astimezone(UTC).isoformat(),
        selection.end.astimezone(UTC).isoformat(),
    ]
    rows: list[list[str]] = []

    def add(measure: str, key: str, value: object) -> None:
        rows.append([*scope, measure, key, "" if value is None else str(value)])

    for c in report.sla_compliance:
        add("sla_compliance", f"{c.rule}.due", c.due)
        add("sla_compliance", f"{c.rule}.met", c.met)
        add("sla_compliance", f"{c.rule}.rate", c.rate)
    for name, stats in (
        ("waiting_time", report.waiting_time),
        ("handling_time", report.handling_time),
    ):
        for key, value in stats.model_dump().items():
            add(name, key, value)
    for key, value in report.satisfaction.model_dump().items():
        add("satisfaction", key, value)
    for key, value in report.complaints.model_dump().items():
        add("complaints", key, value)
    for key, value in report.revisit_completion.model_dump().items():
        add("revisit_completion", key, value)
    for key, value in report.retention.model_dump().items():
        add("retention", key, value)
    if report.training is not None:
        add("training", "required_hours", report.training.required_hours)
        add("training", "short", report.training.short)
        for s in report.training.shortfalls:
            add("training", f"{spreadsheet_safe(s.staff_id)}.missing", s.missing)
    return rows


@router.get("/quality.csv")
async def quality_csv(
    request: Request,
    ctx: ContextDep,
    _: Overseer,
    branch_id: Annotated[str | None, Query(max_length=128)] = None,
    rm_id: Annotated[str | None, Query(max_length=128)] = None,
    start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
) -> Response:
    selection, report, now = await _report(request, ctx, branch_id, rm_id, start, end)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["branch_id", "rm_id", "from", "to", "measure", "key", "value"])
    writer.writerows(quality_rows(selection, report))
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="quality-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/refusals")
async def refusals_page(
    request: Request,
    ctx: ContextDep,
    principal: Overseer,
    rule: Annotated[str | None, Query(max_length=8)] = None,
    branch_id: Annotated[str | None, Query(max_length=128)] = None,
    too_long: TooLong = None,
) -> Response:
    """Submissions a rule refused, about the clients of the caller's team (their RMs' clients;
    an admin: all, also those about no client followup knows), newest first. Supervisors do
    not use the audit service (separation of duties, docs/access-control.md). ``too_long``:
    the fields a refused request sent too long, marked on the form (#12)."""
    only, never = task_scope_filter(principal, staff_of(request))
    rule = rule if rule and re.fullmatch(RULE_ID, rule) else None
    branch = branch_id if branch_id and re.fullmatch(IDENTIFIER, branch_id) else None
    page = await refusals(
        ctx.pool,
        RefusalSelection(
            rule=rule,
            branch_id=branch,
            rm_in=only,
            rm_not_in=never,
            any_client=principal.has(Role.ADMIN),
        ),
    )
    return site_of(request).render(
        request,
        "refusals.html",
        {
            "rows": page.rows,
            "rules": page.rules,
            "form": {"rule": rule or "", "branch_id": branch or ""},
            "too_long": too_long_fields(too_long, REFUSAL_FIELDS),
            "max_length": REFUSAL_FIELDS,
        },
    )
