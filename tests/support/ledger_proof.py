"""A Python model of what the audit ledger's scan has PostgreSQL prove of each row (#12)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from branchline_audit.domain.canonical import chain_hash


def database_proves(row: Sequence[Any]) -> bool:
    """What the ledger's scan asks PostgreSQL of each row (``PROVEN_BY_DATABASE``), in
    Python: stored bytes, not pruned, the hash, the text columns and integer-only numbers.
    The unit tests feed rows with it; the integration tests hold the SQL to it on real rows."""
    canonical, event, pruned_at = row[3], row[4], row[6]
    if canonical is None or pruned_at is not None or not isinstance(event, dict):
        return False
    if chain_hash(row[1], canonical) != row[2]:
        return False

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    actor = event.get("actor")
    return (
        text(event.get("event_id")) == str(row[7])
        and text(event.get("type")) == row[8]
        and row[8] != ""
        and text(event.get("client_id")) == row[9]
        and (text(actor.get("id")) if isinstance(actor, dict) else None) == row[10]
        and text(event.get("branch_id")) == row[11]
        and _integers_only(event)
    )


def _integers_only(node: Any) -> bool:
    if isinstance(node, dict):
        return all(_integers_only(v) for v in node.values())
    if isinstance(node, list):
        return all(_integers_only(v) for v in node)
    if type(node) is float:
        return False
    return type(node) is not int or abs(node) <= 2**53 - 1
