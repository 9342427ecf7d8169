"""Followup's HTTP routes for relationship managers, supervisors and (dev) admins."""

from __future__ import annotations

from fastapi import APIRouter

from branchline_followup.entrypoints import (
    http_clients,
    http_dev_clock,
    http_followups,
    http_personal_data,
    http_statistics,
)


def api_router(*, dev_mode: bool) -> APIRouter:
    router = APIRouter()
    router.include_router(http_followups.router)
    router.include_router(http_personal_data.router)
    router.include_router(http_clients.router)
    router.include_router(http_statistics.router)
    if dev_mode:
        router.include_router(http_dev_clock.router)
    return router
