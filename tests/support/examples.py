"""The example payloads and journey (:mod:`branchline_cli.example_journey`, shared with the
load generator) and the helpers tests build submissions with."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from branchline_cli.example_journey import (
    EXAMPLE_ADMIN_ID,
    EXAMPLE_BRANCH_ID,
    EXAMPLE_CLIENT_ID,
    EXAMPLE_JOURNEY,
    EXAMPLE_PAYLOADS,
    EXAMPLE_PRODUCT_ID,
    EXAMPLE_RM_ID,
    EXAMPLE_SHELF,
    EXAMPLE_STAFF_ID,
    EXAMPLE_SUPERVISOR_ID,
    JourneyStep,
)
from branchline_shared.events.envelope import RecordedEvent

__all__ = [
    "EXAMPLE_ADMIN_ID",
    "EXAMPLE_BRANCH_ID",
    "EXAMPLE_CLIENT_ID",
    "EXAMPLE_JOURNEY",
    "EXAMPLE_PAYLOADS",
    "EXAMPLE_PRODUCT_ID",
    "EXAMPLE_RM_ID",
    "EXAMPLE_SHELF",
    "EXAMPLE_STAFF_ID",
    "EXAMPLE_SUPERVISOR_ID",
    "JourneyStep",
    "example_data",
    "recorded_steps",
    "submission",
]


def example_data(event_type: str) -> dict[str, Any]:
    """A private deep copy of the example ``data`` of ``event_type`` (KeyError if unknown)."""
    return copy.deepcopy(dict(EXAMPLE_PAYLOADS[event_type]))


def submission(step: JourneyStep, *, client_id: str = EXAMPLE_CLIENT_ID) -> dict[str, Any]:
    """The JSON body of ``POST /v1/events`` for ``step`` (no event id: the server assigns one).
    A shelf or staff step names its own subject instead of the client."""
    if step.subject_id is not None:
        return {
            "type": step.type,
            "occurred_at": step.occurred_at,
            step.subject_field: step.subject_id,
            "actor": {"id": step.actor_id, "role": step.actor_role},
            "data": copy.deepcopy(dict(step.data)),
        }
    return {
        "type": step.type,
        "occurred_at": step.occurred_at,
        "client_id": client_id,
        "branch_id": EXAMPLE_BRANCH_ID,
        "channel": step.channel,
        "actor": {"id": step.actor_id, "role": step.actor_role},
        "data": copy.deepcopy(dict(step.data)),
    }


def recorded_steps(
    steps: Sequence[JourneyStep], client_id: str, start: datetime
) -> list[RecordedEvent]:
    """``steps`` as their stores record them, one minute apart from ``start`` (each subject's
    stream versions in order; the client steps for ``client_id``; followup's own events from
    followup)."""
    versions: dict[str, int] = {}
    events = []
    for n, step in enumerate(steps):
        subject_id = step.subject_id or client_id
        versions[subject_id] = versions.get(subject_id, 0) + 1
        at = (start + timedelta(minutes=n)).isoformat()
        events.append(
            RecordedEvent.model_validate(
                {
                    "event_id": str(uuid.uuid4()),
                    "type": step.type,
                    "occurred_at": at,
                    "recorded_at": at,
                    "source": "followup" if step.type.startswith("followup.") else "intake",
                    "actor": {"id": step.actor_id, "role": step.actor_role},
                    step.subject_field: subject_id,
                    "branch_id": EXAMPLE_BRANCH_ID if step.subject_id is None else None,
                    "channel": step.channel if step.subject_id is None else None,
                    "stream_id": f"{step.subject_field}-{subject_id}",
                    "stream_version": versions[subject_id],
                    "data": copy.deepcopy(dict(step.data)),
                }
            )
        )
    return events
