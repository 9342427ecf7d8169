"""Rendering, sessions and CSRF protection of the console pages.

The session cookie holds the caller's JWT itself, checked on every request by the same token
codec (and roles) as the JSON APIs: no second session store, and a token's expiry ends the
session. It is ``HttpOnly``, ``SameSite=Strict`` and ``Secure`` when the page is served over
TLS. Every form and every htmx request carries a CSRF token equal to a random cookie
(double-submit; the cookie is ``SameSite=Strict`` and rotated at login and logout), checked
in constant time before anything else is read.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from branchline_shared.console.i18n import (
    COMMON_VOCABULARY,
    LOCALE_COOKIE,
    Formatter,
    negotiate,
    translations,
)
from branchline_shared.console.problem_titles import page_titles
from branchline_shared.http.auth import Principal, Role, TokenCodec
from branchline_shared.http.problems import Problem

SESSION_COOKIE = "bl_session"
"""Prefix of the session cookie; one per service (``bl_session_followup``, ...): each service's
tokens are for its own audience, and cookies of one host are shared across its ports."""
CSRF_COOKIE = "bl_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PREFIX = "/console"
ERROR_FRAGMENT_HEADER = "Console-Error-Fragment"
"""Set on the console's own error fragments: ``console.js`` swaps a 4xx into the page only
when it carries this header and HX-Retarget, never a 4xx from elsewhere (#12)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""No inline script or style anywhere in the console: every asset is a file of ours."""


@dataclass(frozen=True)
class NavLink:
    href: str
    label: str
    """An English source string, translated when rendered."""
    external: bool = False


@dataclass(frozen=True)
class ConsoleConfig:
    """What one service's console is: its templates, its menu per principal, where a login
    lands, the time zones of its dates and whether the dev login may issue tokens."""

    service: str
    template_dirs: Sequence[Path]
    nav: Callable[[Principal], list[NavLink]]
    home: Callable[[Principal], str]
    default_zone: str = "UTC"
    branch_zones: Mapping[str, str] = field(default_factory=dict)
    dev_mode: bool = False
    dev_roles: tuple[Role, ...] = ()
    vocabulary: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """The service's closed value sets (group -> code -> English source string)."""
    form_page: Callable[[str, Mapping[str, str]], str | None] | None = None
    """The console page a refused plain form came from, by the refused request's path and the
    fields its form carries (a post's text fields, a get's query; checked by the service, which
    keeps only what its form takes, never a secret; none: the form does not say): the refused
    page links back to it, else to the page the browser names as the referrer (#12)."""


def shared_dir(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(name)))


class ConsoleSite:
    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config

    @cache  # noqa: B019 - one site per app, kept for the app's life
    def environment(self, locale: str) -> jinja2.Environment:
        loader = jinja2.FileSystemLoader([*self.config.template_dirs, shared_dir("templates")])
        env = jinja2.Environment(
            loader=loader,
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
        env.globals["label"] = self.labeller(locale)
        env.globals["problem_titles"] = page_titles(locale)
        return env

    def labeller(self, locale: str) -> Callable[[str, str | None], str]:
        """``label(group, code)``: the translated name of a code of a closed value set (the
        code itself when the set does not know it)."""
        groups = {**COMMON_VOCABULARY, **self.config.vocabulary}
        gettext = translations(locale).gettext

        def label(group: str, code: str | None) -> str:
            if code is None:
                return "—"
            source = groups.get(group, {}).get(code)
            return gettext(source) if source is not None else code

        return label

    def gettext(self, request: Request) -> Callable[[str], str]:
        """Translation of the request's locale, for messages composed in code."""
        return translations(locale_of(request)).gettext

    def formatter(self, locale: str) -> Formatter:
        return Formatter(locale, self.config.default_zone, dict(self.config.branch_zones))

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
    ) -> Response:
        locale = locale_of(request)
        principal: Principal | None = getattr(request.state, "console_principal", None)
        values: dict[str, Any] = {
            "request": request,
            "locale": locale,
            "fmt": self.formatter(locale),
            "user": principal,
            "roles": sorted(r.value for r in principal.roles) if principal else [],
            "nav": self.config.nav(principal) if principal else [],
            "csrf_token": csrf_token(request),
            "csrf_field": CSRF_FIELD,
            "current_path": request.url.path,
            "here": _relative_url(request),
            "service": self.config.service,
        }
        values.update(context or {})
        body = self.environment(locale).get_template(template).render(values)
        response = HTMLResponse(body, status_code=status)
        return finish(request, response)

    def redirect(self, request: Request, url: str) -> Response:
        if request.headers.get("hx-request") == "true":
            response: Response = Response(status_code=204, headers={"HX-Redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        return finish(request, response)


def finish(request: Request, response: Response) -> Response:
    """Headers of every console response, and the CSRF cookie when one was minted."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Cookie, Accept-Language"
    minted: str | None = getattr(request.state, "minted_csrf", None)
    if minted is not None:
        set_cookie(request, response, CSRF_COOKIE, minted)
    return response


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=PREFIX, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def site_of(request: Request) -> ConsoleSite:
    site: ConsoleSite = request.app.state.console
    return site


def locale_of(request: Request) -> str:
    return negotiate(request.cookies.get(LOCALE_COOKIE), request.headers.get("accept-language"))


def csrf_token(request: Request) -> str:
    """The request's CSRF token: the cookie's, or a fresh one set with the response."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and not getattr(request.state, "rotate_csrf", False):
        return existing
    minted: str | None = getattr(request.state, "minted_csrf", None)
    if minted is None:
        minted = secrets.token_urlsafe(32)
        request.state.minted_csrf = minted
    return minted


def rotate_csrf(request: Request) -> None:
    """A new CSRF token from now on (login, logout)."""
    request.state.rotate_csrf = True
    request.state.minted_csrf = None


class NotSignedIn(Exception):
    """No valid session: the page answers with the login page's address."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "not signed in")
        self.reason = reason


class ConsoleForbidden(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CsrfRefused(Exception):
    pass


def _relative_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def login_url(request: Request) -> str:
    return f"{PREFIX}/login?next={quote(_relative_url(request), safe='')}"


def session_cookie(request: Request) -> str:
    return f"{SESSION_COOKIE}_{site_of(request).config.service}"


async def signed_in(request: Request) -> Principal:
    token = request.cookies.get(session_cookie(request))
    if not token:
        raise NotSignedIn()
    codec: TokenCodec = request.app.state.token_codec
    try:
        principal = codec.verify(token)
    except Problem as refused:
        raise NotSignedIn(refused.detail) from None
    request.state.console_principal = principal
    request.state.principal = principal
    return principal


SignedIn = Annotated[Principal, Depends(signed_in)]


def console_roles(*roles: Role) -> Any:
    """A page for these roles only; others get the console's 403 page."""
    wanted = frozenset(roles)

    async def check(principal: SignedIn) -> Principal:
        if not principal.has_any(wanted):
            raise ConsoleForbidden(
                "this page needs one of the roles " + ", ".join(sorted(r.value for r in wanted))
            )
        return principal

    return Depends(check)


async def csrf_checked(request: Request) -> None:
    """Refuses a state-changing request whose CSRF token (form field or header) does not
    match the cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise CsrfRefused()


CsrfChecked = Depends(csrf_checked)


def marked_resend_safe(request: Request) -> None:
    """Marks a console action that is safe to send again whatever became of the first
    sending (answered as it was, recorded once): its ``outcome-unknown`` page then says so,
    where another action's says to look first (pages.py, #12)."""
    request.state.console_resend_safe = True


def is_resend_safe(request: Request) -> bool:
    """Whether the action ``request`` runs was marked with :data:`ResendSafe`."""
    return getattr(request.state, "console_resend_safe", False) is True


ResendSafe = Depends(marked_resend_safe)
"""A console action that may be sent again after ``outcome-unknown`` (docs/console.md)."""
