"""How an API process (intake, followup, audit: uvicorn behind ``DrainingServer``) stops (#12).

- a stop signal while the app's lifespan is still starting (a slow broker or database) cuts
  the start short: what it opened is closed, nothing is served, no failure is logged;
- a stop the process carried out exits 0, as the workers do (uvicorn re-raises the signal:
  -15, which Kubernetes reports as an ``Error``);
- requests still in flight after the drain are cancelled at
  ``BRANCHLINE_SHUTDOWN_REQUESTS_TIMEOUT_S`` (it was uvicorn's 10 s, hard-coded).

The in-process tests call ``handle_exit`` as the signal handler would, without installing
handlers in the test process (uvicorn would re-raise the signal into it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Generator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from tests.support.processes import stopped_by

from branchline_cli import components
from branchline_shared.embedded.ports import free_port
from branchline_shared.http.graceful import DrainingServer
from branchline_shared.settings import BranchlineSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


class _InProcessServer(DrainingServer):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _blocked_start(steps: list[str], entered: asyncio.Event) -> FastAPI:
    """An app whose start waits for ever (a broker that never answers), opening a resource
    first and closing it as it unwinds."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        steps.append("opened")
        try:
            entered.set()
            await asyncio.Event().wait()
            yield
        finally:
            steps.append("closed")

    return FastAPI(lifespan=lifespan)


@pytest.mark.parametrize("when", ["before the start ran", "while the start waits"])
async def test_a_stop_while_the_api_starts_cuts_the_start_and_closes_what_it_opened(
    when: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    steps: list[str] = []
    entered = asyncio.Event()
    app = _blocked_start(steps, entered)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None)
    server = _InProcessServer(config, app_state=app.state, drain_s=5)
    serving = asyncio.create_task(server.serve())
    try:
        if when == "while the start waits":
            await entered.wait()
        server.handle_exit(signal.SIGTERM, None)
        # Before: the start ran on (here: for ever), and only a started server stopped.
        async with asyncio.timeout(8):
            await serving
    finally:
        serving.cancel()
    assert steps == ["opened", "closed"]
    assert server.cut_short
    assert not server.started
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "cut short by a stop signal" in caplog.text


REQUEST_S = 4.0
"""The in-flight request's own length: eight times the configured 0.5 s, 6 s short of the old
fixed 10 s."""


async def test_a_request_still_in_flight_after_the_drain_is_cancelled_at_the_configured_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler: list[str] = []
    entered = asyncio.Event()
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        handler.append("entered")
        entered.set()
        try:
            # Ends by itself well before uvicorn's old 10 s and well after the configured
            # 0.5 s: which of the two came first tells the bound, not a clock on the stop.
            await asyncio.sleep(REQUEST_S)
        except asyncio.CancelledError:
            handler.append("cancelled")
            raise
        handler.append("finished")
        return {}

    settings: Any = SimpleNamespace(
        bind_host="127.0.0.1", max_header_bytes=8192, shutdown_requests_timeout_s=0.5
    )
    port = free_port()
    started = asyncio.Event()
    server = _InProcessServer(
        components._config(app, port, settings),
        app_state=app.state,
        drain_s=0,
        on_started=started.set,
    )
    serving = asyncio.create_task(server.serve())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        try:
            await started.wait()
            request = asyncio.create_task(client.get("/slow"))
            await entered.wait()
            server.handle_exit(signal.SIGTERM, None)
            stopping = time.monotonic()
            # Before: the bound was uvicorn's 10 s whatever the setting (the request then
            # finished at REQUEST_S, uncancelled). Bounded only against a hang.
            async with asyncio.timeout(30):
                await serving
            took = time.monotonic() - stopping
            with contextlib.suppress(httpx.HTTPError):
                await request
        finally:
            serving.cancel()
    assert handler == ["entered", "cancelled"]
    assert took >= 0.5  # the request had its configured time
    assert "timeout graceful shutdown exceeded" in caplog.text


def test_the_requests_timeout_is_a_bounded_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRANCHLINE_SHUTDOWN_REQUESTS_TIMEOUT_S", "2.5")
    settings = BranchlineSettings()
    assert settings.shutdown_requests_timeout_s == 2.5
    config = components._config(FastAPI(), 0, settings)
    assert config.timeout_graceful_shutdown == 2.5
    assert BranchlineSettings.model_fields["shutdown_requests_timeout_s"].default == 10
    for wrong in ("-1", "601"):
        monkeypatch.setenv("BRANCHLINE_SHUTDOWN_REQUESTS_TIMEOUT_S", wrong)
        with pytest.raises(ValidationError):
            BranchlineSettings()


# An API process as `branchline run` starts one (components._serve), with an app that needs
# nothing: it serves, or its start waits for ever.
_API = textwrap.dedent(
    """
    import asyncio, contextlib, sys
    from types import SimpleNamespace
    from fastapi import FastAPI
    from branchline_cli import components

    @contextlib.asynccontextmanager
    async def blocked(_):
        print("starting", flush=True)
        await asyncio.Event().wait()
        yield

    app = FastAPI(lifespan=blocked) if sys.argv[2] == "starting" else FastAPI()
    settings = SimpleNamespace(
        bind_host="127.0.0.1",
        max_header_bytes=8192,
        shutdown_drain_s=0.2,
        shutdown_requests_timeout_s=1,
    )
    components._serve(app, int(sys.argv[1]), settings, lambda: print("started", flush=True))
    """
)


@pytest.mark.parametrize("state", ["started", "starting"])
def test_an_api_process_stopped_by_sigterm_exits_0(state: str) -> None:
    port = free_port()

    def connect_once_started() -> None:
        if state == "started":
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass

    code, output = stopped_by(
        [sys.executable, "-c", _API, str(port), state],
        signal.SIGTERM,
        ready=state.encode(),
        before=connect_once_started,
    )
    # Before: -15 for a started server (uvicorn re-raises the signal); a start waiting for
    # ever was never stopped by SIGTERM.
    assert code == 0, output
    assert "Traceback" not in output, output
