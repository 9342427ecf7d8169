"""The processes Branchline is made of; the same commands run in dev and in production."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

import uvicorn

from branchline_shared.http.bounded_headers import bounded_http_protocol
from branchline_shared.logging_setup import configure_logging
from branchline_shared.settings import BranchlineSettings


class Component(StrEnum):
    INTAKE_API = "intake-api"
    FOLLOWUP_API = "followup-api"
    FOLLOWUP_WORKER = "followup-worker"
    AUDIT_API = "audit-api"
    AUDIT_CONSUMER = "audit-consumer"


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

        _serve(intake_app(settings), settings.intake_port, settings)
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


def _serve(app: object, port: int, settings: BranchlineSettings) -> None:
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=settings.bind_host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        http=bounded_http_protocol(settings.max_header_bytes),
    )
