"""A console's menu and landing page, written as data: each service lists its links and
where each role lands; the menus and landing pages are built here, the same way for every
service (``docs/console.md``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from branchline_shared.console.web import NavLink
from branchline_shared.http.auth import Principal, Role


@dataclass(frozen=True)
class MenuLink:
    """A menu entry shown to principals holding any of ``roles``."""

    href: str
    label: str
    """An English source string (mark it with ``N_``), translated when rendered."""
    roles: frozenset[Role]
    external: bool = False
    """A page of another service's console."""


@dataclass(frozen=True)
class Landing:
    """Where a login lands: for principals holding any of ``roles`` and none of ``unless``."""

    href: str
    roles: frozenset[Role]
    unless: frozenset[Role] = frozenset()

    def fits(self, principal: Principal) -> bool:
        return principal.has_any(self.roles) and not principal.has_any(self.unless)


def menu(links: Sequence[MenuLink]) -> Callable[[Principal], list[NavLink]]:
    """The menu of a principal: the links their roles may use, in the order listed."""

    def nav(principal: Principal) -> list[NavLink]:
        return [
            NavLink(link.href, link.label, external=link.external)
            for link in links
            if principal.has_any(link.roles)
        ]

    return nav


def landing(landings: Sequence[Landing], otherwise: str) -> Callable[[Principal], str]:
    """Where a principal lands: the first landing that fits them, else ``otherwise``."""

    def home(principal: Principal) -> str:
        return next((lnd.href for lnd in landings if lnd.fits(principal)), otherwise)

    return home


def other_console_url(configured: str | None, *, host: str, port: int) -> str:
    """Where another service's console is: the configured address, else that service on
    this host (each service serves its own console on its own port)."""
    if configured:
        return configured.rstrip("/")
    return f"http://{host}:{port}/console"
