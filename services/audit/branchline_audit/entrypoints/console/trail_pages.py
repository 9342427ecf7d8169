"""The auditor's pages. Every page that shows the trail first records the read with its
stated purpose (D-11), through the same use cases as the JSON routes; without a purpose the
page shows only the form that asks for one."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.application.proofs import ProofRefused, inclusion
from branchline_audit.application.querying import EntryView, views_of
from branchline_audit.application.recording import record_read
from branchline_audit.domain.filters import LedgerFilters
from branchline_audit.domain.records import AUDIT_READ
from branchline_audit.domain.verification import AlteredEntry
from branchline_audit.entrypoints.http import export_response, started_export
from branchline_shared.console.refill import refilled, too_long_fields
from branchline_shared.console.web import console_roles, locale_of, site_of
from branchline_shared.events.catalogue import EventType
from branchline_shared.http.auth import Principal, Role

# The trail's content is for auditors only, as in the JSON API (docs/access-control.md,
# "Separation of duties"): supervisors are among those it records, admins run the system.
Auditor = Annotated[Principal, console_roles(Role.AUDITOR)]
RefusalReader = Auditor
Text = Annotated[str | None, Query(max_length=128)]
Purpose = Annotated[str | None, Query(max_length=500)]
Day = Annotated[str | None, Query(max_length=10)]
TooLong = Annotated[str | None, Query(max_length=128)]

RULE_VIOLATION_REFUSED = EventType.RULE_VIOLATION_REFUSED.value
PAGE_SIZE = 50

ENTRY_MAX = 2**53 - 1
FORM_PAGES = {
    "/console/trail": "/console/trail",
    "/console/reads": "/console/reads",
    "/console/refusals": "/console/refusals",
    "/console/export": "/console/trail",  # the trail page's export links
}
FORM_FIELDS = {
    "purpose": 500,
    "client_id": 128,
    "actor_id": 128,
    "branch_id": 128,
    "type": 64,
    "from": 10,
    "to": 10,
}
"""The trail form's fields and how long each may be (as the pages take them)."""
ENTRY_PATH = re.compile(r"/console/entries/([0-9]{1,16})")

router = APIRouter(prefix="/console", include_in_schema=False)


def form_page(path: str, fields: Mapping[str, str]) -> str | None:
    """The form page a refused request of the audit console links back to, by its path: the
    trail's, who-read-what's or the refusals' search form (the export's: the trail's), or an
    entry's purpose form, filled in with what was typed (each field as long as the form takes
    it, else left out and named in ``too_long`` so that the form marks it; no cursor) and
    shown with ``edit``: nothing is read or recorded until the form is sent again. None for a
    path that is no form's (#12)."""
    entry = ENTRY_PATH.fullmatch(path)
    names: tuple[str, ...]
    if entry is not None and 1 <= int(entry.group(1)) <= ENTRY_MAX:
        page, names = path, ("purpose",)
    elif path in FORM_PAGES or path.startswith("/console/entries/"):
        page = FORM_PAGES.get(path, "/console/trail")
        names = tuple(n for n in FORM_FIELDS if n != "type" or page == "/console/trail")
    else:
        return None
    # the form marks the fields left out as too long (which, and why), never their values
    kept = refilled(fields, {name: FORM_FIELDS[name] for name in names})
    return f"{page}?{urlencode({**kept, 'edit': 'true'})}" if kept else page


def get_audit(request: Request) -> AuditContext:
    audit: AuditContext = request.app.state.audit
    return audit


AuditDep = Annotated[AuditContext, Depends(get_audit)]


def _reader(principal: Principal, purpose: str | None) -> TrailReader:
    return TrailReader(
        subject=principal.subject,
        roles=frozenset(r.value for r in principal.roles),
        purpose=purpose,
    )


def _day(value: str | None, zone: Any, *, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` day in the branch's zone; the end of a period is the next midnight."""
    if not value:
        return None
    try:
        parsed = datetime.strptime(value, "%Y-%m-%d").date()  # noqa: DTZ007 - a date
    except ValueError:
        return None
    start = datetime.combine(parsed, time(0), tzinfo=zone)
    return start + timedelta(days=1) if end else start


class TrailQuery:
    """The filters and purpose of the trail pages, as the form sent them."""

    def __init__(
        self,
        purpose: Purpose = None,
        client_id: Text = None,
        actor_id: Text = None,
        branch_id: Text = None,
        type: Annotated[str | None, Query(max_length=64)] = None,
        start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
        cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        edit: bool = False,
        too_long: TooLong = None,
    ) -> None:
        self.purpose = (purpose or "").strip()
        # the form as it was sent, to change and send again: nothing read or recorded
        self.edit = edit
        self.too_long = too_long_fields(too_long, FORM_FIELDS) if edit else frozenset()
        self.max_length = FORM_FIELDS
        self.form = {
            "client_id": (client_id or "").strip(),
            "actor_id": (actor_id or "").strip(),
            "branch_id": (branch_id or "").strip(),
            "type": (type or "").strip(),
            "from": start or "",
            "to": end or "",
        }
        self.cursor = cursor or 0

    def filters(self, zone: Any, *, fixed_type: str | None = None) -> LedgerFilters:
        form = self.form
        return LedgerFilters(
            client_id=form["client_id"] or None,
            actor_id=form["actor_id"] or None,
            branch_id=form["branch_id"] or None,
            type=fixed_type or form["type"] or None,
            occurred_from=_day(form["from"], zone),
            occurred_to=_day(form["to"], zone, end=True),
        )

    def query(self, **extra: Any) -> dict[str, Any]:
        values: dict[str, Any] = {"purpose": self.purpose, **self.form, **extra}
        return {k: v for k, v in values.items() if v not in ("", None)}


TrailQueryDep = Annotated[TrailQuery, Depends(TrailQuery)]


def _rows(views: list[EntryView]) -> list[dict[str, Any]]:
    rows = []
    for v in views:
        event = v.event
        actor = event.get("actor") if isinstance(event.get("actor"), dict) else {}
        rows.append(
            {
                "position": v.stored.entry.position,
                "type": v.stored.columns.event_type,
                "client_id": v.stored.columns.client_id,
                "branch_id": v.stored.columns.branch_id,
                "actor_id": v.stored.columns.actor_id or (actor or {}).get("id"),
                "occurred_at": v.stored.columns.occurred_at,
                "appended_at": v.stored.entry.appended_at,
                "view": v.view.value,
                "data": event.get("data") if isinstance(event.get("data"), dict) else {},
                "event": event,
            }
        )
    return rows


async def _trail_page(
    request: Request,
    audit: AuditContext,
    principal: Principal,
    q: TrailQuery,
    *,
    template: str,
    page: str,
    fixed_type: str | None = None,
) -> Response:
    site = site_of(request)
    zone = site.formatter(locale_of(request)).zone()
    filters = q.filters(zone, fixed_type=fixed_type)
    context: dict[str, Any] = {
        "q": q,
        "rows": None,
        "next_query": None,
        "export_query": {},
        "page": page,
        "needs_purpose": False,
        "refused": None,
    }
    if not q.purpose or q.edit:
        context["needs_purpose"] = not q.edit and "purpose" in request.query_params
        return site.render(request, template, context)
    reader = _reader(principal, q.purpose)
    await record_read(
        audit, reader, f"console GET {page}", {**filters.as_dict(), "cursor": q.cursor or None}
    )
    entries = await audit.ledger.entries(filters, after_position=q.cursor, limit=PAGE_SIZE)
    try:
        context["rows"] = _rows(await views_of(audit, entries, reader))
    except AlteredEntry as altered:
        # Named, with the way past it (the next page starts after it), never shown (D-11).
        context["refused"] = altered.detail
        context["next_query"] = q.query(cursor=altered.position)
        return site.render(request, template, context, status=409)
    if len(entries) == PAGE_SIZE:
        context["next_query"] = q.query(cursor=entries[-1].entry.position)
    context["export_query"] = q.query()
    return site.render(request, template, context)


@router.get("/")
async def start(request: Request, principal: RefusalReader) -> Response:
    target = (
        "/console/trail"
        if principal.has_any(frozenset({Role.AUDITOR, Role.ADMIN}))
        else ("/console/refusals")
    )
    return site_of(request).redirect(request, target)


@router.get("/trail")
async def trail(
    request: Request, audit: AuditDep, principal: Auditor, q: TrailQueryDep
) -> Response:
    return await _trail_page(request, audit, principal, q, template="trail.html", page="/trail")


@router.get("/reads")
async def reads(
    request: Request, audit: AuditDep, principal: Auditor, q: TrailQueryDep
) -> Response:
    """Who read what: the trail's own ``audit.read`` entries (D-11)."""
    return await _trail_page(
        request, audit, principal, q, template="reads.html", page="/reads", fixed_type=AUDIT_READ
    )


@router.get("/refusals")
async def refusals(
    request: Request, audit: AuditDep, principal: RefusalReader, q: TrailQueryDep
) -> Response:
    """Refused submissions (``rule.violation_refused``): the rule, when, where, who."""
    return await _trail_page(
        request,
        audit,
        principal,
        q,
        template="refusals.html",
        page="/refusals",
        fixed_type=RULE_VIOLATION_REFUSED,
    )


@router.get("/entries/{position}")
async def entry(
    request: Request,
    position: int,
    audit: AuditDep,
    principal: Auditor,
    purpose: Purpose = None,
    edit: bool = False,
    too_long: TooLong = None,
) -> Response:
    """One entry with its inclusion proof and the checkpoint it leads to, checked in the
    browser by ``verify.js``."""
    site = site_of(request)
    q = TrailQuery(purpose=purpose, edit=edit, too_long=too_long)
    if not q.purpose or q.edit or not 1 <= position <= ENTRY_MAX:
        return site.render(
            request,
            "entry.html",
            {"q": q, "position": position, "row": None, "missing": False},
        )
    reader = _reader(principal, q.purpose)
    await record_read(audit, reader, "console GET /entries/{position}", {"position": position})
    stored = await audit.ledger.entry(position)
    if stored is None:
        return site.render(
            request,
            "entry.html",
            {"q": q, "position": position, "row": None, "missing": True},
            status=404,
        )
    try:
        row = _rows(await views_of(audit, [stored], reader))[0]
    except AlteredEntry as altered:
        return site.render(
            request,
            "entry.html",
            {"q": q, "position": position, "row": None, "missing": False, "altered": altered},
            status=409,
        )
    proof: dict[str, Any] | None = None
    refused: str | None = None
    try:
        found = await inclusion(audit, position)
        proof = {
            "entry_hash": stored.entry.hash.hex(),
            "leaf_index": position - 1,
            "leaf_hash": found.leaf_hash.hex(),
            "tree_size": found.checkpoint.tree_size,
            "inclusion_path": [p.hex() for p in found.path],
            "checkpoint": found.checkpoint.note,
            "verifier_key": audit.signer.verifier_key_string(),
        }
    except ProofRefused as error:
        refused = error.detail
    return site.render(
        request,
        "entry.html",
        {
            "q": q,
            "position": position,
            "row": row,
            "hash": stored.entry.hash.hex(),
            "prev_hash": stored.entry.prev_hash.hex(),
            "event_json": json.dumps(row["event"], ensure_ascii=False, indent=2, sort_keys=True),
            "proof": proof,
            "proof_json": json.dumps(proof) if proof else "",
            "refused": refused,
        },
    )


@router.get("/export")
async def export(
    request: Request,
    audit: AuditDep,
    principal: Auditor,
    q: TrailQueryDep,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> Response:
    """The JSON route's export (entries plus a signed manifest), for the filters shown."""
    site = site_of(request)
    if not q.purpose:
        return site.redirect(request, "/console/trail?purpose=")
    zone = site.formatter(locale_of(request)).zone()
    filters = q.filters(zone)
    reader = _reader(principal, q.purpose)
    started = await started_export(
        request, audit, reader, filters, format, route="console GET /export"
    )
    return export_response(started)
