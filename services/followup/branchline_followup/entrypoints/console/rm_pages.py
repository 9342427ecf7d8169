"""The RM's pages: "My day" (open work by deadline, filters, complete without a reload) and
the client page. They call the same use cases and queries as the JSON routes."""

from __future__ import annotations

import re
import uuid
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from statistics import fmean
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from branchline_followup.adapters import queries
from branchline_followup.adapters.console_read_models import Assessment, client_page_records
from branchline_followup.application.actions import TaskRefused, complete_task
from branchline_followup.application.queries import stage_at
from branchline_followup.application.reading import record_client_read
from branchline_followup.application.recording import FollowupContext
from branchline_followup.domain import TaskKind
from branchline_followup.entrypoints.console.vocabulary import DIMENSIONS, OUTCOMES, REASONS
from branchline_followup.entrypoints.http_deps import (
    ContextDep,
    TaskView,
    actor_of,
    client_in_scope,
    may_grade,
    oversees,
    staff_of,
    submitter_of,
    task_in_scope,
    task_scope_filter,
    task_view,
)
from branchline_followup.entrypoints.task_cursor import CursorInvalid, decode_cursor, encode_cursor
from branchline_shared.access.scope import StaffDirectory
from branchline_shared.console.i18n import N_
from branchline_shared.console.refill import TOO_LONG, refilled, too_long_fields
from branchline_shared.console.web import (
    ERROR_FRAGMENT_HEADER,
    CsrfChecked,
    ResendSafe,
    console_roles,
    locale_of,
    site_of,
)
from branchline_shared.events.catalogue import SatisfactionScores
from branchline_shared.events.catalogue.scalars import Label, Note
from branchline_shared.events.vocabulary import FollowupOutcome
from branchline_shared.http.auth import Principal, Role

Worker = Annotated[Principal, console_roles(Role.RM, Role.SUPERVISOR, Role.ADMIN)]

STATUS_CHOICES = ("open", "overdue", "due_soon", "on_track", "done")
PAGE_SIZE = 100
TRAIL_MAX = 16
"""How many earlier pages' cursors the work list keeps (``back``): beyond, the oldest go,
and "Previous page" from the oldest one kept leads to the first page (#12)."""
TRAIL_SEPARATOR = "."  # never in a cursor (URL-safe base64)
CLIENT_PAGE = "GET /console/clients/{client_id}"
ASSIGNEE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")

router = APIRouter(prefix="/console", include_in_schema=False)


@dataclass(frozen=True)
class WorkPage:
    """A page of the work list: its tasks, and the next page's cursor (none at the end)."""

    tasks: list[TaskView]
    shown_assignee: str
    next_cursor: str | None
    skipped: bool
    """The read stopped past rows it could not read (#12): fewer tasks than a page, maybe
    none, though more may follow on the next page."""


async def _work_list(
    ctx: FollowupContext,
    principal: Principal,
    staff: StaffDirectory,
    *,
    assignee: str | None,
    status: str,
    kind: str | None,
    client_id: str | None,
    after: tuple[datetime | str, uuid.UUID] | None = None,
) -> WorkPage:
    """A page of the tasks shown, ordered by deadline, within the caller's scope (the JSON
    API's rule: an RM's own, a supervisor's team's, everyone's for an admin), from the key
    ``after`` on. The scope filter is applied to every page: a cursor cannot widen it."""
    if not oversees(principal):
        assignee = principal.subject
    only, never = task_scope_filter(principal, staff)
    now = await ctx.clock.now()
    window = ctx.projection.policy.due_soon_window
    found = await queries.list_tasks(
        ctx.pool,
        where=queries.TaskFilter(
            assignee=assignee or None,
            status=status if status in STATUS_CHOICES else "open",
            kind=kind if kind in {k.value for k in TaskKind} else None,
            client_id=client_id or None,
            assignee_in=only,
            assignee_not_in=never,
        ),
        after=after,
        limit=PAGE_SIZE + 1,
        now=now,
        due_soon_window=window,
    )
    page = found.rows[:PAGE_SIZE]
    next_cursor = None
    skipped = False
    if len(found.rows) > PAGE_SIZE:
        next_cursor = encode_cursor(page[-1]["due_at"], page[-1]["id"])
    elif found.resume_after is not None:
        # the read stopped past rows it could not read: the next page goes on after them
        next_cursor = encode_cursor(*found.resume_after)
        skipped = True
    return WorkPage(
        tasks=[task_view(r, now, window) for r in page],
        shown_assignee=assignee or "",
        next_cursor=next_cursor,
        skipped=skipped,
    )


def work_filters(
    status: str, kind: str | None, client_id: str | None, assignee: str | None
) -> dict[str, Any]:
    return {
        "status": status if status in STATUS_CHOICES else "open",
        "kind": kind or "",
        "client_id": client_id or "",
        "assignee": assignee or "",
    }


def bad_cursor(request: Request, filters: dict[str, Any]) -> Response:
    """The 400 page of a cursor this console did not make (a link's or a form's). To htmx,
    the work list's fragment saying so, with the headers that put it in place of the list
    and the one that marks it as the console's own error fragment: ``console.js`` swaps a
    4xx only when it carries both, so the RM sees it (#12)."""
    site = site_of(request)
    if request.headers.get("hx-request") != "true":
        return site.render(request, "bad_cursor.html", {"filters": filters}, status=400)
    answer = site.render(request, "_bad_cursor.html", {"filters": filters}, status=400)
    answer.headers["HX-Retarget"] = "#work-list"
    answer.headers["HX-Reswap"] = "outerHTML"
    answer.headers[ERROR_FRAGMENT_HEADER] = "work-list"
    return answer


def parse_trail(text: str | None) -> list[str] | None:
    """The cursors of the pages before this one (``back``), oldest first; none when one of
    them is not a cursor this console made, or they are more than it keeps (#12)."""
    if not text:
        return []
    trail = text.split(TRAIL_SEPARATOR)
    if len(trail) > TRAIL_MAX or not all(len(c) <= 512 and cursor_valid(c) for c in trail):
        return None
    return trail


def cursor_valid(cursor: str) -> bool:
    """A form's cursor is checked as the link's is, before anything is recorded."""
    try:
        decode_cursor(cursor)
    except CursorInvalid:
        return False
    return True


def page_address(
    filters: dict[str, Any], cursor: str, trail: list[str] | None = None, **extra: str
) -> str:
    """The work list's page that starts at ``cursor`` (none: the first), with the filters
    and the cursors of the pages before it (``trail``): where a plain form post goes back to
    after its action, and the "Previous" and "Next page" links (#12)."""
    query = {k: v for k, v in filters.items() if v}
    if cursor:
        query["cursor"] = cursor
        if trail:
            query["back"] = TRAIL_SEPARATOR.join(trail[-TRAIL_MAX:])
    return "/console/?" + urlencode({**query, **extra})


@dataclass(frozen=True)
class ShownPage:
    """The work list's page shown for a cursor: its tasks, its own cursor and trail, and
    whether the page asked for was left with no task (this is the nearest before it)."""

    work: WorkPage
    cursor: str | None
    trail: list[str]
    emptied: bool


async def shown_page(
    request: Request,
    ctx: FollowupContext,
    principal: Principal,
    filters: dict[str, Any],
    cursor: str | None,
    trail: list[str],
) -> ShownPage:
    """The page from ``cursor`` on (checked already, as ``trail``'s cursors are); a later
    page left with no task is not shown: the page before it is, the nearest with tasks,
    else the first (#12)."""
    trail = list(trail)
    after = decode_cursor(cursor) if cursor else None
    emptied = False
    while True:
        work = await _work_list(
            ctx,
            principal,
            staff_of(request),
            assignee=filters["assignee"],
            status=filters["status"],
            kind=filters["kind"],
            client_id=filters["client_id"],
            after=after,
        )
        if work.tasks or work.skipped or cursor is None:
            return ShownPage(work, cursor, trail, emptied)
        cursor = trail.pop() if trail else None
        after = decode_cursor(cursor) if cursor else None
        emptied = True


async def landing_address(
    request: Request,
    ctx: FollowupContext,
    principal: Principal,
    filters: dict[str, Any],
    cursor: str,
    trail: list[str],
    **notice: str,
) -> str:
    """Where a plain form post goes after its action: the page it was on, or, when that
    page has no task left, straight to the page that will be shown, saying so (``went``):
    one redirect, not the emptied page's and then its 303 (#12)."""
    if not cursor:
        return page_address(filters, "", [], **notice)
    shown = await shown_page(request, ctx, principal, filters, cursor, trail)
    if not shown.emptied:
        return page_address(filters, cursor, trail, **notice)
    return page_address(filters, shown.cursor or "", shown.trail, went="1", **notice)


WORK_LIST = "/console/"
WORK_FIELDS = {"status": 16, "kind": 64, "client_id": 128, "assignee": 128}
"""The work list's filters and how long each may be (as the page and its forms take them)."""
TASK_FIELDS = {"note": 2000, "assignee": 128, "reason": 200}
"""The per-task forms' typed fields and how long each may be (the event catalogue's ``Note``
and ``Label``, a staff id): checked by the action itself, so that a value too long is the
form's error, marked on that task's form, not a refused page leading back to the list (#12)."""
QUALITY_FIELDS = {"branch_id": 128, "rm_id": 128, "from": 10, "to": 10}
REFUSAL_FIELDS = {"rule": 8, "branch_id": 128}
SEARCH_FORMS = {
    "/console/quality": ("/console/quality", QUALITY_FIELDS),
    "/console/quality.csv": ("/console/quality", QUALITY_FIELDS),  # the page's CSV link
    "/console/refusals": ("/console/refusals", REFUSAL_FIELDS),
}
"""The supervisor's search forms by the path a refused request went to: its page, its fields."""
TooLong = Annotated[str | None, Query(max_length=128)]


def form_page(path: str, fields: Mapping[str, str]) -> str | None:
    """The page a refused request of this console came from, filled in again. The work
    list's: by its filters (a filter form's get, or an action's form carrying them as
    ``f_*``), each as long as the form takes, else left out and named in ``too_long`` so
    that the page marks it (never its value), and an action's cursor and trail where this
    console made them, else the first page. The quality and refusals pages': their search
    forms, filled in the same way. None for a path that is no form's (#12)."""
    if path in SEARCH_FORMS:
        page, limits = SEARCH_FORMS[path]
        kept = refilled(fields, limits)
        return f"{page}?{urlencode(kept)}" if kept else page
    action = any(name.startswith("f_") for name in fields)
    if not action and path != WORK_LIST:
        return None
    typed = refilled(fields, WORK_FIELDS, sent_as="f_" if action else "")
    marked = {TOO_LONG: typed[TOO_LONG]} if TOO_LONG in typed else {}
    filters = work_filters(
        typed.get("status", ""), typed.get("kind"), typed.get("client_id"), typed.get("assignee")
    )
    cursor = fields.get("f_cursor", "") if action else ""
    cursor = cursor if len(cursor) <= 512 else ""
    back = fields.get("f_back", "")
    trail = parse_trail(back if len(back) <= TRAIL_MAX * 513 else "") if cursor else []
    if not cursor or not cursor_valid(cursor) or trail is None:
        return page_address(filters, "", [], **marked)
    return page_address(filters, cursor, trail, **marked)


async def render_day(
    request: Request,
    ctx: FollowupContext,
    principal: Principal,
    filters: dict[str, Any],
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    cursor: str | None = None,
    back: str | None = None,
    went_back: bool = False,
    moved: dict[str, str] | None = None,
    too_long: frozenset[str] = frozenset(),
    task_marked: tuple[uuid.UUID, frozenset[str]] | None = None,
) -> Response:
    """The work list's page (from ``cursor`` on, else the first; ``back``: the cursors of
    the pages the RM came through). A cursor that is not one this page made is answered with
    the 400 page, never a 5xx. A later page left with no task (its tasks completed or given
    away) is not shown: the page before it is, the nearest one that shows tasks, else the
    first, and to htmx the address is replaced by that page's; a plain GET given ``moved``
    (its query's notices) is redirected to that page's address, saying it went back (#12).
    ``too_long``: the filters a refused request sent too long, marked on the form;
    ``task_marked``: a task and the fields of its form an action refused as too long, that
    form shown open, those fields marked."""
    site = site_of(request)
    checked = parse_trail(back) if cursor else []
    if (cursor and not cursor_valid(cursor)) or checked is None:
        return bad_cursor(request, filters)
    shown = await shown_page(request, ctx, principal, filters, cursor, checked)
    work, cursor, trail = shown.work, shown.cursor, shown.trail
    went_back = went_back or shown.emptied
    query = {k: v for k, v in filters.items() if v}
    fragment = (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-target") == "work-list"
    )
    here = page_address(filters, cursor or "", trail)
    if shown.emptied and moved is not None and request.headers.get("hx-request") != "true":
        # the shown page's own address (a GET of an emptied page's old address lands here)
        return site.redirect(request, page_address(filters, cursor or "", trail, **moved))
    answer = site.render(
        request,
        "_worklist.html" if fragment else "my_day.html",
        {
            "tasks": work.tasks,
            "filters": filters,
            "too_long": too_long,
            "max_length": WORK_FIELDS,
            "marked_task": str(task_marked[0]) if task_marked else "",
            "task_too_long": task_marked[1] if task_marked else frozenset(),
            "task_max_length": TASK_FIELDS,
            "shown_assignee": work.shown_assignee,
            "paged": cursor is not None,
            # the forms of the page carry it: after an action, the same page again (#12)
            "cursor": cursor or "",
            "back": TRAIL_SEPARATOR.join(trail),
            "went_back": went_back,
            "skipped": work.skipped,
            "first_page": "/console/?" + urlencode(query),
            "previous_page": page_address(filters, trail[-1], trail[:-1]) if trail else None,
            "next_page": (
                page_address(filters, work.next_cursor, [*trail, cursor] if cursor else [])
                if work.next_cursor
                else None
            ),
            "oversees": oversees(principal),
            "status_choices": STATUS_CHOICES,
            "kinds": sorted(k.value for k in TaskKind),
            "outcomes": list(OUTCOMES),
            "reasons_known": frozenset(REASONS),
            "dimensions": list(DIMENSIONS),
            "notice": notice,
            "error": error,
            # each form shown is one request: sent again, it is the same (a refusal once)
            "form_key": str(uuid.uuid4()),
        },
        status=status,
    )
    if shown.emptied and request.headers.get("hx-request") == "true":
        answer.headers["HX-Replace-Url"] = here
    return answer


@router.get("/")
async def my_day(
    request: Request,
    ctx: ContextDep,
    principal: Worker,
    status: Annotated[str, Query(max_length=16)] = "open",
    kind: Annotated[str | None, Query(max_length=64)] = None,
    client_id: Annotated[str | None, Query(max_length=128)] = None,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    done: Annotated[str | None, Query(max_length=1)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    back: Annotated[str | None, Query(max_length=TRAIL_MAX * 513)] = None,
    given: Annotated[str | None, Query(max_length=128)] = None,
    went: Annotated[str | None, Query(max_length=1)] = None,
    too_long: TooLong = None,
) -> Response:
    """The work list by deadline, a page at a time: ``cursor`` (a "Next page" link's) is
    where the page starts, ``back`` the cursors of the pages before it (a "Previous page"
    link's); the filters are kept across pages (#12). ``done`` and ``given``:
    a plain form post's action done (completed; reassigned to ``given``); ``went``: the
    page asked for was left with no task, this is the one before it (a redirect's);
    ``too_long``: the filters a refused request sent too long (:func:`form_page`), marked."""
    gettext = site_of(request).gettext(request)
    notice = None
    moved = {"went": "1"}
    if done:
        notice = gettext(N_("Task completed."))
        moved["done"] = "1"
    elif given and ASSIGNEE.fullmatch(given):
        notice = gettext(N_("Task given to %(assignee)s.")) % {"assignee": given}
        moved["given"] = given
    return await render_day(
        request,
        ctx,
        principal,
        work_filters(status, kind, client_id, assignee),
        notice=notice,
        cursor=cursor,
        back=back,
        went_back=bool(went),
        moved=moved,
        too_long=too_long_fields(too_long, WORK_FIELDS),
    )


class FormInvalid(Exception):
    def __init__(self, message: str, too_long: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.message = message
        self.too_long = too_long
        """The fields of the task's form sent longer than it takes (marked, never echoed)."""


def check_lengths(**typed: str) -> None:
    """Refuses, naming them, the per-task form's fields longer than :data:`TASK_FIELDS` says,
    before anything is recorded. Whitespace around is not counted: the event holds the text
    stripped."""
    too_long = frozenset(
        name for name, value in typed.items() if len(value.strip()) > TASK_FIELDS[name]
    )
    if too_long:
        raise FormInvalid(
            N_("Nothing was recorded: a field is too long (marked on the task's form)."),
            too_long,
        )


NOTE: TypeAdapter[str] = TypeAdapter(Note)
LABEL: TypeAdapter[str] = TypeAdapter(Label)


def free_text(value: str, kind: TypeAdapter[str]) -> str | None:
    """A form's free text as its event will hold it, or none when blank. What the event
    catalogue refuses (a control character, the prefix reserved for sealed values) is the
    form's error here, before anything is recorded: not a failure of the use case (a 5xx)."""
    text = value.strip()
    if not text:
        return None
    try:
        kind.validate_python(text)
    except ValidationError:
        raise FormInvalid(
            N_("The text holds a character that cannot be recorded (a control character).")
        ) from None
    return text


def _scores(values: dict[str, str]) -> SatisfactionScores | None:
    """All five D-10 scores (integers 0..100), or none."""
    given = {k: v.strip() for k, v in values.items() if v.strip()}
    if not given:
        return None
    if len(given) != len(DIMENSIONS):
        raise FormInvalid(N_("Give all five satisfaction scores, or none."))
    try:
        return SatisfactionScores.model_validate({k: int(v) for k, v in given.items()})
    except (ValueError, ValidationError):
        raise FormInvalid(N_("Each score is a whole number from 0 to 100.")) from None


def _next_contact(value: str, zone: Any) -> datetime | None:
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise FormInvalid(N_("The next contact is not a date and time.")) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)  # as the RM sees it: the branch's time zone
    return moment


@router.post("/tasks/{task_id}/complete", dependencies=[CsrfChecked, ResendSafe])
async def complete(
    request: Request,
    task_id: uuid.UUID,
    ctx: ContextDep,
    principal: Worker,
    outcome: Annotated[str, Form(max_length=64)],
    note: Annotated[str, Form()] = "",  # bounded by check_lengths (and the edge's body limit)
    next_contact_at: Annotated[str, Form(max_length=40)] = "",
    attitude: Annotated[str, Form(max_length=8)] = "",
    professionalism: Annotated[str, Form(max_length=8)] = "",
    response_speed: Annotated[str, Form(max_length=8)] = "",
    risk_management: Annotated[str, Form(max_length=8)] = "",
    convenience: Annotated[str, Form(max_length=8)] = "",
    f_status: Annotated[str, Form(max_length=16)] = "open",
    f_kind: Annotated[str, Form(max_length=64)] = "",
    f_client_id: Annotated[str, Form(max_length=128)] = "",
    f_assignee: Annotated[str, Form(max_length=128)] = "",
    f_cursor: Annotated[str, Form(max_length=512)] = "",
    f_back: Annotated[str, Form(max_length=TRAIL_MAX * 513)] = "",
    request_key: Annotated[str, Form(max_length=64)] = "",
    client_warned: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Records ``followup.completed`` through the same use case as the JSON route; answers
    htmx with the updated list, a plain form post with a redirect to it: the page the form
    was on (its filters and ``f_cursor``; a cursor this console did not make is the 400
    page, and nothing is recorded). ``request_key``: the form's own, made when it was
    shown: a refusal (D-15) is recorded once per form submitted, however often that
    submission is sent (#12)."""
    site = site_of(request)
    filters = work_filters(f_status, f_kind, f_client_id, f_assignee)
    if f_cursor and not (cursor_valid(f_cursor) and parse_trail(f_back) is not None):
        return bad_cursor(request, filters)
    back = f_back if f_cursor else ""
    gettext = site.gettext(request)
    error: str | None = None
    marked: tuple[uuid.UUID, frozenset[str]] | None = None
    try:
        check_lengths(note=note)
        if outcome not in OUTCOMES:
            raise FormInvalid(N_("Choose an outcome."))
        row = await queries.fetch_task_view(ctx.pool, task_id)
        zone = site.formatter(locale_of(request)).zone(row["branch_id"] if row else None)
        await complete_task(
            ctx,
            task_id,
            actor=actor_of(principal),
            may_act=lambda assignee: task_in_scope(principal, staff_of(request), assignee),
            may_grade=lambda assignee: may_grade(principal, assignee),
            submitted_by=submitter_of(principal),
            outcome=FollowupOutcome(outcome),
            note=free_text(note, NOTE),
            next_contact_at=_next_contact(next_contact_at, zone),
            scores=_scores(
                {
                    "attitude": attitude,
                    "professionalism": professionalism,
                    "response_speed": response_speed,
                    "risk_management": risk_management,
                    "convenience": convenience,
                }
            ),
            # D-15: a review's box ticked once the client was warned (unticked: not sent)
            client_warned=True if client_warned == "true" else None,
            request_key=request_key.strip() or None,
        )
    except FormInvalid as invalid:
        error = gettext(invalid.message)
        marked = (task_id, invalid.too_long) if invalid.too_long else None
    except TaskRefused as refused:
        error = gettext(N_("The task was not completed: %(detail)s")) % {"detail": refused.detail}
    page = f_cursor or None
    trail = back.split(TRAIL_SEPARATOR) if back else []
    if request.headers.get("hx-request") != "true":
        if error is None:
            landing = await landing_address(
                request, ctx, principal, filters, f_cursor, trail, done="1"
            )
            return site.redirect(request, landing)
        return await render_day(
            request,
            ctx,
            principal,
            filters,
            error=error,
            status=422,
            cursor=page,
            back=back,
            task_marked=marked,
        )
    notice = None if error else gettext(N_("Task completed."))
    return await render_day(
        request,
        ctx,
        principal,
        filters,
        notice=notice,
        error=error,
        cursor=page,
        back=back,
        task_marked=marked,
    )


@router.get("/clients/{client_id}")
async def client_page(
    request: Request, client_id: str, ctx: ContextDep, principal: Worker
) -> Response:
    """The client at a glance. An RM opens only the clients they manage."""
    site = site_of(request)
    record = await queries.client_record(ctx.pool, client_id[:128])
    if record is None:
        return site.render(request, "client_missing.html", {"client_id": client_id}, status=404)
    if not client_in_scope(
        principal, staff_of(request), rm_id=record.facts.rm_id, branch_id=record.facts.branch_id
    ):
        # out of scope looks like absent (the JSON API's rule): existence does not leak
        return site.render(request, "client_missing.html", {"client_id": client_id}, status=404)
    await record_client_read(
        ctx,
        submitter_of(principal),
        client_id=record.facts.client_id,
        route=CLIENT_PAGE,
        purpose=None,
    )
    now = await ctx.clock.now()
    policy = ctx.projection.policy
    surveys = record.surveys
    satisfaction = [
        (dimension, fmean(float(s[dimension]) for s in surveys) if surveys else None)
        for dimension in DIMENSIONS
    ]
    page = await client_page_records(ctx.pool, record.facts.client_id)
    gettext = site.gettext(request)
    return site.render(
        request,
        "client.html",
        {
            "facts": record.facts,
            "stage": stage_at(record.facts, now, policy).value,
            "tasks": [task_view(t, now, policy.due_soon_window) for t in record.open_tasks],
            "complaints": record.open_complaints,
            "surveys": surveys,
            "satisfaction_labelled": [(gettext(DIMENSIONS[d]), v) for d, v in satisfaction],
            "timeline": page.timeline,
            "consents": page.consents,
            "assessment": _assessment(page.assessment, now, request),
        },
    )


def _assessment(found: Assessment | None, now: datetime, request: Request) -> dict[str, Any] | None:
    """D-05: the latest assessment's validity: as stated, else the institution's default."""
    if found is None:
        return None
    months: int = request.app.state.console_assessment_validity_months
    valid_until = found.valid_until or add_months(found.assessed_at, months)
    return {
        "level": found.level,
        "assessed_at": found.assessed_at,
        "valid_until": valid_until,
        "expired": valid_until <= now,
    }


def add_months(moment: datetime, months: int) -> datetime:
    """The same day ``months`` later (the month's last day where it is shorter)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, monthrange(year, month)[1]))
