"""The processes Branchline is made of; the same commands run in dev and in production."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import uvicorn
from fastapi import FastAPI

from branchline_cli.processes import resolved_processes, serve_forked
from branchline_shared.http.bounded_headers import bounded_http_protocol
from branchline_shared.http.graceful import DrainingServer, serve_draining
from branchline_shared.http.startup_heap import freeze_serving_heap, freeze_startup_heap
from branchline_shared.logging_setup import configure_logging
from branchline_shared.settings import BranchlineSettings


class Component(StrEnum):
    INTAKE_API = "intake-api"
    FOLLOWUP_API = "followup-api"
    FOLLOWUP_WORKER = "followup-worker"
    AUDIT_API = "audit-api"
    AUDIT_CONSUMER = "audit-consumer"
    INTAKE_RELAY = "intake-relay"
    """A standalone outbox relay of intake's store (intake's API runs one too; one of them is
    active at a time, whichever holds the store's relay lock). Not started by ``dev``."""


@dataclass(frozen=True)
class ComponentInfo:
    component: Component
    port_setting: str
    title: str
    public: bool  # an API people call (printed in the dev banner)


COMPONENTS: list[ComponentInfo] = [
    ComponentInfo(Component.INTAKE_API, "intake_port", "intake API", True),
    ComponentInfo(Component.FOLLOWUP_API, "followup_port", "followup API", True),
    ComponentInfo(Component.AUDIT_API, "audit_port", "audit API", True),
    ComponentInfo(Component.FOLLOWUP_WORKER, "followup_worker_port", "followup worker", False),
    ComponentInfo(Component.AUDIT_CONSUMER, "audit_consumer_port", "audit consumer", False),
]


def port_of(info: ComponentInfo, settings: BranchlineSettings) -> int:
    port: int = getattr(settings, info.port_setting)
    return port


def run_component(component: Component, settings: BranchlineSettings) -> None:
    configure_logging(component.value, settings.log_level)
    if component is Component.INTAKE_API:
        from branchline_intake.bootstrap import create_app as intake_app

        processes = resolved_processes(settings.intake_processes)
        if processes > 1:
            raise SystemExit(
                serve_forked(
                    lambda: _draining_server(intake_app(settings), settings.intake_port, settings),
                    settings.bind_host,
                    settings.intake_port,
                    processes,
                    reuse_port=settings.intake_reuse_port,
                )
            )
        _serve(intake_app(settings), settings.intake_port, settings, freeze_serving_heap)
    elif component is Component.FOLLOWUP_API:
        from branchline_followup.bootstrap import create_app as followup_app

        _serve(followup_app(settings), settings.followup_port, settings)
    elif component is Component.AUDIT_API:
        from branchline_audit.bootstrap import create_app as audit_app

        _serve(audit_app(settings), settings.audit_port, settings)
    elif component is Component.FOLLOWUP_WORKER:
        from branchline_followup.bootstrap import run_worker

        asyncio.run(run_worker(settings))
    elif component is Component.AUDIT_CONSUMER:
        from branchline_audit.bootstrap import run_consumer

        asyncio.run(run_consumer(settings))
    elif component is Component.INTAKE_RELAY:
        from branchline_intake.bootstrap import run_relay

        asyncio.run(run_relay(settings))


def _config(app: FastAPI, port: int, settings: BranchlineSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.bind_host,
        port=port,
        log_config=None,
        access_log=False,
        # uvicorn annotates an int but waits with asyncio (any float)
        timeout_graceful_shutdown=settings.shutdown_requests_timeout_s,  # type: ignore[arg-type]
        http=bounded_http_protocol(settings.max_header_bytes),
    )


# An API process freezes its start-up heap once serving (#12, startup_heap.py); a forked
# intake child after its own start-up (each child builds its own app). Intake's also collects
# its young objects less often (freeze_serving_heap).
def _serve(
    app: FastAPI,
    port: int,
    settings: BranchlineSettings,
    on_started: Callable[[], None] = freeze_startup_heap,
) -> None:
    serve_draining(
        app,
        _config(app, port, settings),
        drain_s=settings.shutdown_drain_s,
        on_started=on_started,
    )


def _draining_server(app: FastAPI, port: int, settings: BranchlineSettings) -> DrainingServer:
    return DrainingServer(
        _config(app, port, settings),
        app_state=app.state,
        drain_s=settings.shutdown_drain_s,
        on_started=freeze_serving_heap,  # only intake's API forks
    )
