"""What every service's console has: the login page (a token, or on the embedded stack a
dev token issued for a chosen role), logout, the language switch, the static assets, and the
pages for "sign in first", "forbidden" and a refused CSRF token."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from branchline_shared.console.i18n import LOCALE_COOKIE, LOCALES
from branchline_shared.console.problem_titles import translated_title
from branchline_shared.console.web import (
    PREFIX,
    ConsoleConfig,
    ConsoleForbidden,
    ConsoleSite,
    CsrfChecked,
    CsrfRefused,
    NotSignedIn,
    clear_cookie,
    csrf_token,
    finish,
    is_resend_safe,
    login_url,
    rotate_csrf,
    session_cookie,
    set_cookie,
    shared_dir,
    site_of,
)
from branchline_shared.http.auth import Principal, Role, TokenCodec
from branchline_shared.http.problems import (
    PROBLEM_JSON,
    RETRY_AFTER_S,
    Problem,
    log_fault,
    problem_response,
)
from branchline_shared.postgres.faults import (
    DATABASE_FAULT_CLASSES,
    CommitOutcomeUnknown,
    is_transient_database_fault,
)

DEV_TOKEN_TTL = timedelta(hours=8)
REASON_MAX = 200
"""The refused page quotes at most this much of the problem's title (as console.js does)."""
FIELDS_MAX = 10
"""... and names at most this many of its fields (names only, never the values sent)."""
KEPT_HEADERS = ("allow", "retry-after", "www-authenticate")
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
TOKEN_MAX = 8192
NEXT_MAX = 2048
LOGIN_FIELDS = {"role": 32, "subject": 128}
"""The login form's fields it fills in again, and how long each may be; the token (a secret)
is never sent back, and ``next`` only as a path of this console."""
LOGIN_PAGE = f"{PREFIX}/login"


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
        problem = problem_response(Problem(403, "Forbidden", exc.detail, kind="forbidden"))
        if not _plain_console_request(request):
            return finish(request, problem)
        return await refused_page(
            request, problem, template="forbidden.html", back=_away_from(request)
        )

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        rotate_csrf(request)
        problem = problem_response(
            Problem(
                403,
                "Form expired",
                "the form's security token (CSRF) is missing or out of date: nothing was "
                "done; reload the page and send it again",
                kind="csrf-refused",
            )
        )
        if not _plain_console_request(request):
            csrf_token(request)  # the new token's cookie, as the page sets it
            return finish(request, problem)
        return await refused_page(request, problem, template="csrf.html")

    install_unavailable_page(app)
    install_refused_page(app)


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


def install_refused_page(app: FastAPI) -> None:
    """A 4xx answering a plain (non-htmx) request of a console page is a console page of the
    same status, in the user's language, saying by its kind what was refused and linking
    back to the page the form came from; htmx requests, callers asking for JSON and every
    path outside the console keep the problem+json (#12)."""
    for refusal in (Problem, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(refusal, _refused_page(app.exception_handlers[refusal]))


def _refused_page(
    problem_handler: Any,
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def answer(request: Request, exc: Exception) -> Response:
        response: Response = await problem_handler(request, exc)
        if not 400 <= response.status_code < 500 or not _plain_console_request(request):
            return response
        if response.headers.get("content-type", "").split(";")[0] != PROBLEM_JSON:
            return response
        return await refused_page(request, response)

    return answer


def _plain_console_request(request: Request) -> bool:
    """A browser's own request of a console page (a form post, a link): not htmx's, not a
    static asset's, not a caller that asks for JSON rather than HTML."""
    path = request.url.path
    if not path.startswith(f"{PREFIX}/") or path.startswith(f"{PREFIX}/static/"):
        return False
    if request.headers.get("hx-request") == "true":
        return False
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept or "json" not in accept


def refusal_kind(status: int) -> str:
    """The kind said, as the htmx failure area says it (console.js): the session or the
    permission, a conflict, or any other refusal."""
    if status in (401, 403):
        return "session"
    if status == 409:
        return "conflict"
    return "refused"


def bounded(text: object, limit: int = REASON_MAX) -> str:
    """Text quoted from a problem: whitespace folded, at most ``limit`` characters."""
    folded = " ".join(str(text).split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"


async def refused_page(
    request: Request,
    problem: Response,
    *,
    template: str = "refused.html",
    back: str | None = None,
) -> Response:
    """The console page of a refused plain request: the problem's status, its kind, its
    title (in the page's language when the catalogue has it, else the server's English), the
    fields or rule it names (names only), and the way back (``back``, else the form's page)."""
    try:
        body = json.loads(bytes(problem.body))
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    errors = body.get("errors")
    fields = (
        [bounded(e["field"], 64) for e in errors if isinstance(e, dict) and "field" in e]
        if isinstance(errors, list)
        else []
    )
    back = back or await page_of_the_form(request)
    site = site_of(request)
    reason = bounded(body.get("title", ""))
    answer = site.render(
        request,
        template,
        {
            "status": problem.status_code,
            "kind": refusal_kind(problem.status_code),
            "reason": reason,
            "title": translated_title(reason, site.gettext(request)),
            "fields": fields[:FIELDS_MAX],
            "rule": bounded(body["rule"], 16) if body.get("rule") else None,
            "back": back,
            # the language switch leads the way back too, never to the refused request again
            # (a form post's address, a query holding a value too long, #12)
            "here": back,
            # a page opened (a get): signed in again, perhaps with another role, it opens
            "sign_in": f"{PREFIX}/login?next={quote(_opened(request) or back, safe='')}",
        },
        status=problem.status_code,
    )
    answer.headers["Vary"] = "Cookie, Accept-Language, Accept, HX-Request"
    for name in KEPT_HEADERS:
        if name in problem.headers:
            answer.headers[name] = problem.headers[name]
    return answer


async def page_of_the_form(request: Request) -> str:
    """The page a refused request came from: the one its form's fields name (the service
    checks them, its cursors among them), else the referrer when it is a page of this
    console on this host, else the console's start."""
    named = site_of(request).config.form_page
    if request.url.path == LOGIN_PAGE:
        return login_form_page(await _form_fields(request))
    fields = await _form_fields(request) if named is not None else {}
    return (
        (named(request.url.path, fields) if named else None) or _referrer(request) or f"{PREFIX}/"
    )


def login_form_page(fields: Mapping[str, str]) -> str:
    """The login form a refused sign-in links back to (a refused CSRF token, a field longer
    than the form takes): filled in with the role, the staff id and where it leads, each as
    long as the form takes it, else left out and named in ``too_long`` so that the form marks
    it; never the token, only its name when it was too long (#12)."""
    query: dict[str, str] = {}
    too_long = [name for name in ("token",) if len(fields.get(name, "")) > TOKEN_MAX]
    for name, limit in LOGIN_FIELDS.items():
        value = fields.get(name, "").strip()
        if len(value) > limit:
            too_long.append(name)
        elif value:
            query[name] = value
    target = safe_next(fields.get("next"))
    if target is not None and len(target) <= NEXT_MAX:
        query["next"] = target
    if too_long:
        query["too_long"] = ",".join(too_long)
    return f"{LOGIN_PAGE}?{urlencode(query)}" if query else LOGIN_PAGE


def _opened(request: Request) -> str | None:
    """The console page a get asked for (path and query), none for anything else."""
    if request.method != "GET":
        return None
    query = request.url.query
    return safe_next(request.url.path + (f"?{query}" if query else ""))


def _away_from(request: Request) -> str:
    """Where a page the role may not open links back to: the referrer (a page of this
    console on this host), else the principal's start, else the login page (another role);
    never the refused page itself."""
    here = request.url.path
    principal: Principal | None = getattr(request.state, "console_principal", None)
    home = site_of(request).config.home(principal) if principal is not None else None
    for candidate in (_referrer(request), home):
        if candidate and urlsplit(candidate).path != here:
            return candidate
    return f"{PREFIX}/login?next={quote(here, safe='')}"


async def _form_fields(request: Request) -> dict[str, str]:
    """The text fields of a routed form post (its body was read for the route already, and
    bounded by the edge's body limit), or a get's query (a get form's fields); none for
    anything else or a body not at hand."""
    if request.method == "GET":
        return dict(request.query_params)
    if request.method != "POST" or "endpoint" not in request.scope:
        return {}
    try:
        form = await request.form()
    except (RuntimeError, ValueError, AssertionError):
        return {}
    return {name: value for name, value in form.items() if isinstance(value, str)}


def _referrer(request: Request) -> str | None:
    """The referring page, only when it is a page of this console on this very host."""
    parts = urlsplit(request.headers.get("referer", ""))
    if parts.netloc != request.headers.get("host") or parts.scheme not in ("http", "https"):
        return None
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


def common_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("/login")
    async def login_page(
        request: Request,
        next: str | None = None,
        role: Annotated[str, Query(max_length=LOGIN_FIELDS["role"])] = "",
        subject: Annotated[str, Query(max_length=LOGIN_FIELDS["subject"])] = "",
        too_long: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        """The login form; from a refused sign-in (:func:`login_form_page`) filled in, the
        fields it sent too long marked."""
        marked = {"token", *LOGIN_FIELDS} & set(too_long.split(","))
        invalid = dict.fromkeys(sorted(marked), "too-long")
        return _login_form(request, next, role=role, subject=subject, invalid=invalid)

    @router.post("/login", dependencies=[CsrfChecked])
    async def login(
        request: Request,
        token: Annotated[str, Form(max_length=TOKEN_MAX)] = "",
        role: Annotated[str, Form(max_length=LOGIN_FIELDS["role"])] = "",
        subject: Annotated[str, Form(max_length=LOGIN_FIELDS["subject"])] = "",
        next: Annotated[str, Form(max_length=NEXT_MAX)] = "",
    ) -> Response:
        site = site_of(request)
        codec: TokenCodec = request.app.state.token_codec
        typed = {"role": role, "subject": subject.strip()}
        if not token.strip() and role:
            token = _dev_token(site, codec, role, subject.strip())
            if not token:
                refused = "subject" if _dev_role(site, role) else "role"
                invalid = {refused: f"{refused}-refused"}
                return _login_form(request, next, **typed, invalid=invalid, status=422)
        try:
            principal = codec.verify(token.strip())
        except Problem:
            invalid = {"token": "invalid-token"}
            return _login_form(request, next, **typed, invalid=invalid, status=401)
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
        next: Annotated[str, Form(max_length=NEXT_MAX)] = "",
    ) -> Response:
        site = site_of(request)
        response = site.redirect(request, safe_next(next) or f"{PREFIX}/login")
        if locale in LOCALES:
            set_cookie(request, response, LOCALE_COOKIE, locale)
        return response

    return router


def _dev_token(site: ConsoleSite, codec: TokenCodec, role: str, subject: str) -> str:
    """A token for a chosen role, only where the dev login is switched on."""
    if not _dev_role(site, role):
        return ""
    if not re.fullmatch(SUBJECT_PATTERN, subject):
        return ""
    return codec.issue(subject, [Role(role)], ttl=DEV_TOKEN_TTL, now=datetime.now(UTC))


def _dev_role(site: ConsoleSite, role: str) -> bool:
    """Whether the dev login is on and may issue a token for ``role``."""
    config = site.config
    return config.dev_mode and role in {r.value for r in config.dev_roles}


def _login_form(
    request: Request,
    next: str | None,
    *,
    role: str = "",
    subject: str = "",
    invalid: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The login form: filled in with the role and staff id sent (never the token), each
    refused field (``invalid``: its name -> why) marked and named."""
    site = site_of(request)
    response = site.render(
        request,
        "login.html",
        {
            "next": safe_next(next) or "",
            "role": role,
            "subject": subject,
            "invalid": dict(invalid or {}),
            "token_max": TOKEN_MAX,
            "role_max": LOGIN_FIELDS["role"],
            "subject_max": LOGIN_FIELDS["subject"],
            "dev_mode": site.config.dev_mode,
            "dev_roles": [r.value for r in site.config.dev_roles],
            "reason": None,
        },
        status=status,
    )
    return response
