"""The followup service's web console: the RM's day and client pages, the supervisor's team
board, reassignment, quality dashboard and refusals (``docs/console.md``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI

from branchline_followup.entrypoints.console.rm_pages import form_page
from branchline_followup.entrypoints.console.rm_pages import router as rm_router
from branchline_followup.entrypoints.console.supervisor_pages import router as supervisor_router
from branchline_followup.entrypoints.console.vocabulary import VOCABULARY
from branchline_shared.console.i18n import N_
from branchline_shared.console.navigation import (
    Landing,
    MenuLink,
    landing,
    menu,
    other_console_url,
)
from branchline_shared.console.pages import install_console
from branchline_shared.console.web import ConsoleConfig
from branchline_shared.http.auth import Role
from branchline_shared.settings import FollowupSettings

TEMPLATES = Path(__file__).parent / "templates"


SUPERVISORS = frozenset({Role.SUPERVISOR, Role.ADMIN})

FOLLOWUP_MENU = [
    MenuLink("/console/", N_("My day"), frozenset({Role.RM}) | SUPERVISORS),
    MenuLink("/console/team", N_("Team board"), SUPERVISORS),
    MenuLink("/console/quality", N_("Quality"), SUPERVISORS),
    MenuLink("/console/refusals", N_("Refusals"), SUPERVISORS),
]


def audit_console_url(settings: FollowupSettings) -> str:
    """Where the auditor's pages are (another service, on its own port)."""
    return other_console_url(
        settings.console_audit_url, host=settings.bind_host, port=settings.audit_port
    )


def followup_landings(audit: str) -> list[Landing]:
    """A supervisor lands on the team board, an auditor who is no RM on the audit trail."""
    return [
        Landing("/console/team", SUPERVISORS),
        Landing(f"{audit}/trail", frozenset({Role.AUDITOR}), unless=frozenset({Role.RM})),
    ]


def install_followup_console(app: FastAPI, settings: FollowupSettings) -> None:
    audit = audit_console_url(settings)
    app.state.console_assessment_validity_months = settings.assessment_validity_months
    router = APIRouter()
    router.include_router(rm_router)
    router.include_router(supervisor_router)
    install_console(
        app,
        ConsoleConfig(
            service="followup",
            template_dirs=[TEMPLATES],
            nav=menu(FOLLOWUP_MENU),
            home=landing(followup_landings(audit), otherwise="/console/"),
            default_zone=settings.calendar_default_timezone,
            branch_zones=dict(settings.calendar_branch_timezones),
            dev_mode=settings.dev_mode,
            dev_roles=(Role.RM, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN),
            vocabulary=VOCABULARY,
            form_page=form_page,
        ),
        router,
    )
