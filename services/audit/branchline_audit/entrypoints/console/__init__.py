"""The audit service's web console: the trail with a required purpose, an entry with its
inclusion proof checked in the browser, the export, who read what, and the refusals
(``docs/console.md``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from branchline_audit.entrypoints.console.trail_pages import router
from branchline_audit.entrypoints.console.vocabulary import VOCABULARY
from branchline_shared.console.i18n import N_
from branchline_shared.console.pages import install_console
from branchline_shared.console.web import ConsoleConfig, NavLink
from branchline_shared.http.auth import Principal, Role
from branchline_shared.settings import AuditSettings

TEMPLATES = Path(__file__).parent / "templates"


def followup_console_url(settings: AuditSettings) -> str:
    if settings.console_followup_url:
        return settings.console_followup_url.rstrip("/")
    return f"http://{settings.bind_host}:{settings.followup_port}/console"


def install_audit_console(app: FastAPI, settings: AuditSettings) -> None:
    followup = followup_console_url(settings)

    def nav(principal: Principal) -> list[NavLink]:
        links = []
        if principal.has_any(frozenset({Role.AUDITOR, Role.ADMIN})):
            links += [
                NavLink("/console/trail", N_("Trail")),
                NavLink("/console/reads", N_("Who read what")),
            ]
        if principal.has_any(frozenset({Role.AUDITOR, Role.SUPERVISOR, Role.ADMIN})):
            links.append(NavLink("/console/refusals", N_("Refusals")))
        if principal.has_any(frozenset({Role.RM, Role.SUPERVISOR})):
            links.append(NavLink(f"{followup}/", N_("Follow-up work"), external=True))
        return links

    def home(principal: Principal) -> str:
        if principal.has_any(frozenset({Role.AUDITOR, Role.ADMIN})):
            return "/console/trail"
        if Role.SUPERVISOR in principal.roles:
            return "/console/refusals"
        return f"{followup}/"

    install_console(
        app,
        ConsoleConfig(
            service="audit",
            template_dirs=[TEMPLATES],
            nav=nav,
            home=home,
            default_zone=settings.calendar_default_timezone,
            branch_zones=dict(settings.calendar_branch_timezones),
            dev_mode=settings.dev_mode,
            dev_roles=(Role.AUDITOR, Role.SUPERVISOR, Role.RM, Role.ADMIN),
            vocabulary=VOCABULARY,
        ),
        router,
    )
