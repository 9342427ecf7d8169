"""The events every measure writes (Branchline, the baselines and the peer alike)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now_text() -> str:
    # Events happen now: intake bounds how far in the past an event may claim to be.
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def event_body(i: int, run: str) -> dict[str, Any]:
    return {
        "type": "client.registered",
        "occurred_at": now_text(),
        "client_id": f"C-{run}-{i}",
        "branch_id": "BR-1",
        "channel": "walk_in",
        "actor": {"id": "s-1", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-1"},
    }


def consent_body(client_id: str) -> dict[str, Any]:
    """An event a registered client can receive any number of times."""
    return {
        "type": "client.consent_granted",
        "occurred_at": now_text(),
        "client_id": client_id,
        "branch_id": "BR-1",
        "channel": "walk_in",
        "actor": {"id": "s-1", "role": "teller"},
        "data": {"purposes": ["service"]},
    }
