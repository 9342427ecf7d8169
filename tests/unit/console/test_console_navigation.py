"""Each console's menu and landing page per role, built by branchline_shared.console from the
service's own link lists (review item D7: one builder, per-service data)."""

from __future__ import annotations

import pytest

from branchline_audit.entrypoints.console import AUDIT_LANDINGS, audit_menu
from branchline_followup.entrypoints.console import FOLLOWUP_MENU, followup_landings
from branchline_shared.console.navigation import landing, menu, other_console_url
from branchline_shared.http.auth import Principal, Role

pytestmark = pytest.mark.unit

FOLLOWUP = "http://followup.example/console"
READER_LINKS = ["/console/trail", "/console/reads", "/console/refusals"]
AUDIT = "http://audit.example/console"


def who(*roles: Role) -> Principal:
    return Principal(subject="someone", roles=frozenset(roles))


@pytest.mark.parametrize(
    ("roles", "links", "home"),
    [
        (
            (Role.AUDITOR,),
            ["/console/trail", "/console/reads", "/console/refusals"],
            "/console/trail",
        ),
        ((Role.SUPERVISOR,), ["/console/refusals", f"{FOLLOWUP}/"], "/console/refusals"),
        ((Role.RM,), [f"{FOLLOWUP}/"], f"{FOLLOWUP}/"),
        (
            (Role.ADMIN,),
            ["/console/trail", "/console/reads", "/console/refusals"],
            "/console/trail",
        ),
    ],
)
def test_audit_console(roles: tuple[Role, ...], links: list[str], home: str) -> None:
    principal = who(*roles)
    nav = menu(audit_menu(FOLLOWUP))(principal)
    assert [link.href for link in nav] == links
    assert [link.external for link in nav] == [h.startswith("http") for h in links]
    assert landing(AUDIT_LANDINGS, otherwise=f"{FOLLOWUP}/")(principal) == home


@pytest.mark.parametrize(
    ("roles", "links", "home"),
    [
        ((Role.RM,), ["/console/"], "/console/"),
        (
            (Role.SUPERVISOR,),
            ["/console/", "/console/team", "/console/quality", "/console/refusals"],
            "/console/team",
        ),
        ((Role.AUDITOR,), [], f"{AUDIT}/trail"),
        ((Role.AUDITOR, Role.RM), ["/console/"], "/console/"),
    ],
)
def test_followup_console(roles: tuple[Role, ...], links: list[str], home: str) -> None:
    principal = who(*roles)
    assert [link.href for link in menu(FOLLOWUP_MENU)(principal)] == links
    assert landing(followup_landings(AUDIT), otherwise="/console/")(principal) == home


def test_another_console_is_configured_or_on_this_host() -> None:
    assert other_console_url("https://audit.bank/console/", host="h", port=1) == (
        "https://audit.bank/console"
    )
    assert other_console_url(None, host="127.0.0.1", port=8003) == "http://127.0.0.1:8003/console"
