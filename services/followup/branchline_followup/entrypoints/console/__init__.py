"""The followup service's web console: the RM's day and client pages, the supervisor's team
board, reassignment, quality dashboard and refusals (``docs/console.md``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI

from branchline_followup.entrypoints.console.rm_pages import router as rm_router
from branchline_followup.entrypoints.console.supervisor_pages import router as supervisor_router
from branchline_followup.entrypoints.console.vocabulary import VOCABULARY
from branchline_shared.console.i18n import N_
from branchline_shared.console.pages import install_console
from branchline_shared.console.web import ConsoleConfig, NavLink
from branchline_shared.http.auth import Principal, Role
from branchline_shared.settings import FollowupSettings

TEMPLATES = Path(__file__).parent / "templates"


def audit_console_url(settings: FollowupSettings) -> str:
    """Where the auditor's pages are (another service, on its own port)."""
    if settings.console_audit_url:
        return settings.console_audit_url.rstrip("/")
    return f"http://{settings.bind_host}:{settings.audit_port}/console"


def install_followup_console(app: FastAPI, settings: FollowupSettings) -> None:
    audit = audit_console_url(settings)

    def nav(principal: Principal) -> list[NavLink]:
        links = []
        if principal.has_any(frozenset({Role.RM, Role.SUPERVISOR, Role.ADMIN})):
            links.append(NavLink("/console/", N_("My day")))
        if principal.has_any(frozenset({Role.SUPERVISOR, Role.ADMIN})):
            links.append(NavLink("/console/team", N_("Team board")))
            links.append(NavLink("/console/quality", N_("Quality")))
            links.append(NavLink("/console/refusals", N_("Refusals")))
        return links

    def home(principal: Principal) -> str:
        if principal.has_any(frozenset({Role.SUPERVISOR, Role.ADMIN})):
            return "/console/team"
        if Role.AUDITOR in principal.roles and Role.RM not in principal.roles:
            return f"{audit}/trail"
        return "/console/"

    app.state.console_assessment_validity_months = settings.assessment_validity_months
    router = APIRouter()
    router.include_router(rm_router)
    router.include_router(supervisor_router)
    install_console(
        app,
        ConsoleConfig(
            service="followup",
            template_dirs=[TEMPLATES],
            nav=nav,
            home=home,
            default_zone=settings.calendar_default_timezone,
            branch_zones=dict(settings.calendar_branch_timezones),
            dev_mode=settings.dev_mode,
            dev_roles=(Role.RM, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN),
            vocabulary=VOCABULARY,
        ),
        router,
    )
