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


@contextlib.asynccontextmanager
async def serving_health(
    service: str, host: str, port: int, checks: Mapping[str, ReadinessCheck]
) -> AsyncIterator[None]:
    config = uvicorn.Config(
        health_app(service, checks),
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
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: the worker finishes its current work and stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
