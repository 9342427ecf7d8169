"""Every service's settings in one object: what the CLI and the embedded dev stack read."""

from __future__ import annotations

from pydantic import Field

from branchline_shared.settings.audit import AuditSettings
from branchline_shared.settings.common import DEV_BROKER_PORT, DEV_POSTGRES_PORT
from branchline_shared.settings.followup import FollowupSettings
from branchline_shared.settings.intake import IntakeSettings


# The pydantic mypy plugin gives each class a typed model_construct of its own and may find the
# union of the services' classes inconsistent (its fields agree: one section, one field).
class BranchlineSettings(  # type: ignore[misc,unused-ignore]
    IntakeSettings, FollowupSettings, AuditSettings
):
    """The union of the services' settings, plus the embedded stack's own ports.

    A service reads only its own class (:class:`IntakeSettings`, ...); this one is passed to
    each of them by the CLI, the dev stack and the tests.
    """

    broker_port: int = Field(
        default=DEV_BROKER_PORT, description="The embedded broker (dev stack)."
    )
    postgres_port: int = Field(
        default=DEV_POSTGRES_PORT, description="The embedded PostgreSQL (dev stack)."
    )
