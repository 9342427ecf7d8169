"""The audit service's web console: the trail with a required purpose, an entry with its
inclusion proof checked in the browser, the export, who read what, and the refusals
(``docs/console.md``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from branchline_audit.entrypoints.console.trail_pages import form_page, router
from branchline_audit.entrypoints.console.vocabulary import VOCABULARY
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
from branchline_shared.settings import AuditSettings

TEMPLATES = Path(__file__).parent / "templates"
AUDIT_READERS = frozenset({Role.AUDITOR, Role.ADMIN})


def followup_console_url(settings: AuditSettings) -> str:
    return other_console_url(
        settings.console_followup_url, host=settings.bind_host, port=settings.followup_port
    )


def audit_menu(followup: str) -> list[MenuLink]:
    """The audit console's links; ``followup`` is where the followup console is."""
    return [
        MenuLink("/console/trail", N_("Trail"), AUDIT_READERS),
        MenuLink("/console/reads", N_("Who read what"), AUDIT_READERS),
        MenuLink("/console/refusals", N_("Refusals"), AUDIT_READERS | {Role.SUPERVISOR}),
        MenuLink(
            f"{followup}/",
            N_("Follow-up work"),
            frozenset({Role.RM, Role.SUPERVISOR}),
            external=True,
        ),
    ]


AUDIT_LANDINGS = [
    Landing("/console/trail", AUDIT_READERS),
    Landing("/console/refusals", frozenset({Role.SUPERVISOR})),
]
"""Anyone else (an RM) lands on the followup console."""


def install_audit_console(app: FastAPI, settings: AuditSettings) -> None:
    followup = followup_console_url(settings)
    install_console(
        app,
        ConsoleConfig(
            service="audit",
            template_dirs=[TEMPLATES],
            nav=menu(audit_menu(followup)),
            home=landing(AUDIT_LANDINGS, otherwise=f"{followup}/"),
            default_zone=settings.calendar_default_timezone,
            branch_zones=dict(settings.calendar_branch_timezones),
            dev_mode=settings.dev_mode,
            dev_roles=(Role.AUDITOR, Role.SUPERVISOR, Role.RM, Role.ADMIN),
            vocabulary=VOCABULARY,
            form_page=form_page,
        ),
        router,
    )
