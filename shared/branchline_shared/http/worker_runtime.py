"""Running a long-lived worker process: signal handling and its health/metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Generator, Mapping

import uvicorn
from fastapi import FastAPI

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
    """An event set by SIGINT or SIGTERM: the worker finishes its current work and stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
