"""Helpers of the console's unit tests: a console app with the shared pages around a test's
own router and token codec, one request or more through it, and the refused page's way
back (#12)."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import APIRouter, FastAPI

from branchline_shared.console.pages import install_console
from branchline_shared.console.web import ConsoleConfig
from branchline_shared.http.problems import install_problem_handlers

BACK = re.compile(r'<a id="console-refused-back" href="([^"]+)"')


def console_app(codec: object, router: APIRouter | None = None, **config: Any) -> FastAPI:
    """The shared console (its problem handlers, login, refused pages) around ``router``,
    signing in with ``codec``; ``config``: the ConsoleConfig's other settings."""
    app = FastAPI()
    install_problem_handlers(app)
    app.state.token_codec = codec
    settings = ConsoleConfig(
        service="test",
        template_dirs=[],
        nav=lambda _p: [],
        home=lambda _p: "/console/mine",
        **config,
    )
    install_console(app, settings, router or APIRouter(prefix="/console"))
    return app


async def requested(
    app: FastAPI, *requests: tuple[str, str, dict[str, Any]]
) -> list[httpx.Response]:
    """Each (method, path, httpx keyword arguments) sent in turn to ``app``."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        return [await client.request(method, path, **kwargs) for method, path, kwargs in requests]


def back_of(page: httpx.Response) -> tuple[str, dict[str, list[str]]]:
    """The refused page's way back: its path and query."""
    found = BACK.search(page.text)
    assert found is not None, page.text
    parts = urlsplit(html.unescape(found.group(1)))
    return parts.path, parse_qs(parts.query)
