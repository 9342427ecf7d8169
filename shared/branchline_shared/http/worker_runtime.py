"""Running a long-lived worker process: signal handling and its health/metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Generator, Mapping

import uvicorn
from fastapi import FastAPI

from branchline_shared import stop_signals
from branchline_shared.http.bounded_headers import bounded_http_protocol
from branchline_shared.http.service_app import ReadinessCheck, create_service_app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside a process that handles its own signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def health_app(service: str, checks: Mapping[str, ReadinessCheck]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = create_service_app(
        service=service, title=f"Branchline {service}", lifespan=lifespan, max_body_bytes=1024
    )
    app.state.readiness_checks = checks
    return app


class HealthServer:
    """The worker's health endpoint, as its process stops."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    async def drain(self, seconds: float) -> None:
        """``/readyz`` answers 503 ``draining`` from now on (the worker keeps working); wait
        ``seconds`` so a probe sees it before the worker drains and commits (as the APIs do,
        ``docs/reliability.md``)."""
        self._app.state.draining = True
        if seconds > 0:
            await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def serving_health(
    service: str, host: str, port: int, checks: Mapping[str, ReadinessCheck]
) -> AsyncIterator[HealthServer]:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` for the block. ``checks`` may be filled
    later (readiness is 503 while it is empty: the worker is still starting)."""
    app = health_app(service, checks)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        http=bounded_http_protocol(32_768),
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name=f"{service}-health")
    try:
        yield HealthServer(app)
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: the worker finishes its current work and stops. One
    that came while the process was still importing (held, ``stop_signals``) sets it now."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if stop_signals.taken():
        stop.set()
    return stop


@contextlib.asynccontextmanager
async def cut_short_by(stop: asyncio.Event) -> AsyncIterator[None]:
    """The block (a worker's start-up) is cancelled as soon as ``stop`` is set, also if it was
    set before: a SIGTERM while the broker or the database is slow must not wait for the start
    to finish (Kubernetes would SIGKILL the pod at the end of its grace period, #12). The
    cancellation unwinds the start (what it opened is closed, ``kafka.starting``) and ends
    here, so the caller tells a start cut short by what the block did not reach."""
    task = asyncio.current_task()
    assert task is not None
    state = {"active": True, "cut": False}

    def cut(_: object) -> None:
        # a stop set as the block ends (the callback runs a turn later) is left to the caller
        if state["active"] and not waiting.cancelled():
            state["cut"] = True
            task.cancel()

    waiting = asyncio.ensure_future(stop.wait())
    waiting.add_done_callback(cut)
    try:
        yield
    except asyncio.CancelledError:
        # ours alone: swallowed; one from outside as well (the loop ending): it goes on
        if not state["cut"] or task.uncancel() > 0:
            raise
    else:
        if state["cut"]:
            task.uncancel()  # the start swallowed our cancellation; the count stays right
    finally:
        state["active"] = False
        waiting.cancel()
