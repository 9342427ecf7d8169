"""What every service's console has: the login page (a token, or on the embedded stack a
dev token issued for a chosen role), logout, the language switch, the static assets, and the
pages for "sign in first", "forbidden" and a refused CSRF token."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from branchline_shared.console.i18n import LOCALE_COOKIE, LOCALES
from branchline_shared.console.web import (
    PREFIX,
    ConsoleConfig,
    ConsoleForbidden,
    ConsoleSite,
    CsrfChecked,
    CsrfRefused,
    NotSignedIn,
    clear_cookie,
    is_resend_safe,
    login_url,
    rotate_csrf,
    session_cookie,
    set_cookie,
    shared_dir,
    site_of,
)
from branchline_shared.http.auth import Role, TokenCodec
from branchline_shared.http.problems import RETRY_AFTER_S, Problem, log_fault
from branchline_shared.postgres.faults import (
    DATABASE_FAULT_CLASSES,
    CommitOutcomeUnknown,
    is_transient_database_fault,
)

DEV_TOKEN_TTL = timedelta(hours=8)
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


def safe_next(target: str | None) -> str | None:
    """Only a path of this console: never another site (no open redirect)."""
    if not target or not target.startswith(f"{PREFIX}/"):
        return None
    if any(c in target for c in "\\\r\n") or target.startswith("//"):
        return None
    return target


def install_console(app: FastAPI, config: ConsoleConfig, router: APIRouter) -> None:
    """Mount the console of one service: its pages (``router``), the common pages, the
    static assets, and the answers to a missing session, a forbidden page, a bad CSRF token."""
    app.state.console = ConsoleSite(config)
    app.mount(
        f"{PREFIX}/static", StaticFiles(directory=shared_dir("static")), name="console-static"
    )
    app.include_router(common_router())
    app.include_router(router)

    @app.exception_handler(NotSignedIn)
    async def sign_in_first(request: Request, exc: NotSignedIn) -> Response:
        return site_of(request).redirect(request, login_url(request))

    @app.exception_handler(ConsoleForbidden)
    async def forbidden(request: Request, exc: ConsoleForbidden) -> Response:
        return site_of(request).render(
            request, "forbidden.html", {"detail": exc.detail}, status=403
        )

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        rotate_csrf(request)
        return site_of(request).render(request, "csrf.html", status=403)

    install_unavailable_page(app)


def install_unavailable_page(app: FastAPI) -> None:
    """A transient database fault on a console page is the same 503 with ``Retry-After`` as the
    APIs answer (one list, postgres/faults.py), shown as a page a person can read; anything
    else, and every path outside the console, goes to the problem handlers already there."""
    for fault in DATABASE_FAULT_CLASSES:
        app.add_exception_handler(fault, _unavailable_page(app.exception_handlers[fault]))


def _unavailable_page(
    problem_handler: Any,
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def answer(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(f"{PREFIX}/") or not is_transient_database_fault(exc):
            response: Response = await problem_handler(request, exc)
            return response
        log_fault(exc)
        response = site_of(request).render(
            request,
            "unavailable.html",
            # Not "nothing was changed": it may have been (postgres/commit_outcome.py). An
            # action marked safe to send again says so; any other, to look first (#12).
            {
                "outcome_unknown": isinstance(exc, CommitOutcomeUnknown),
                "resend_safe": is_resend_safe(request),
            },
            status=503,
        )
        response.headers["Retry-After"] = RETRY_AFTER_S
        return response

    return answer


def common_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("/login")
    async def login_page(request: Request, next: str | None = None) -> Response:
        return _login_form(request, next)

    @router.post("/login", dependencies=[CsrfChecked])
    async def login(
        request: Request,
        token: Annotated[str, Form(max_length=8192)] = "",
        role: Annotated[str, Form(max_length=32)] = "",
        subject: Annotated[str, Form(max_length=128)] = "",
        next: Annotated[str, Form(max_length=2048)] = "",
    ) -> Response:
        site = site_of(request)
        codec: TokenCodec = request.app.state.token_codec
        if not token.strip() and role:
            token = _dev_token(site, codec, role, subject.strip())
            if not token:
                return _login_form(request, next, error="dev-token-refused", status=422)
        try:
            principal = codec.verify(token.strip())
        except Problem:
            return _login_form(request, next, error="invalid-token", status=401)
        request.state.console_principal = principal
        rotate_csrf(request)
        response = site.redirect(request, safe_next(next) or site.config.home(principal))
        set_cookie(request, response, session_cookie(request), token.strip())
        return response

    @router.post("/logout", dependencies=[CsrfChecked])
    async def logout(request: Request) -> Response:
        rotate_csrf(request)
        response = site_of(request).redirect(request, f"{PREFIX}/login")
        clear_cookie(request, response, session_cookie(request))
        return response

    @router.post("/locale", dependencies=[CsrfChecked])
    async def switch_locale(
        request: Request,
        locale: Annotated[str, Form(max_length=8)],
        next: Annotated[str, Form(max_length=2048)] = "",
    ) -> Response:
        site = site_of(request)
        response = site.redirect(request, safe_next(next) or f"{PREFIX}/login")
        if locale in LOCALES:
            set_cookie(request, response, LOCALE_COOKIE, locale)
        return response

    return router


def _dev_token(site: ConsoleSite, codec: TokenCodec, role: str, subject: str) -> str:
    """A token for a chosen role, only where the dev login is switched on."""
    config = site.config
    if not config.dev_mode or role not in {r.value for r in config.dev_roles}:
        return ""
    if not re.fullmatch(SUBJECT_PATTERN, subject):
        return ""
    return codec.issue(subject, [Role(role)], ttl=DEV_TOKEN_TTL, now=datetime.now(UTC))


def _login_form(
    request: Request, next: str | None, *, error: str | None = None, status: int = 200
) -> Response:
    site = site_of(request)
    response = site.render(
        request,
        "login.html",
        {
            "next": safe_next(next) or "",
            "error": error,
            "dev_mode": site.config.dev_mode,
            "dev_roles": [r.value for r in site.config.dev_roles],
            "reason": None,
        },
        status=status,
    )
    return response
