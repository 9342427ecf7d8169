"""The one event every measure writes (Branchline, the baselines and the peer alike)."""

from __future__ import annotations

from typing import Any


def event_body(i: int, run: str) -> dict[str, Any]:
    return {
        "type": "client.registered",
        "occurred_at": "2026-11-22T09:00:00+08:00",
        "client_id": f"C-{run}-{i}",
        "branch_id": "BR-1",
        "channel": "walk_in",
        "actor": {"id": "s-1", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-1"},
    }
