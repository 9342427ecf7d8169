"""Ledger entries as a reader may see them (D-04 masking, D-11 need to know)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.domain.personal import ClientDataState, View
from branchline_audit.domain.verification import StoredEntry, refuse_altered


@dataclass(frozen=True)
class EntryView:
    stored: StoredEntry
    event: dict[str, Any]
    view: View


async def views_of(
    audit: AuditContext, entries: Sequence[StoredEntry], reader: TrailReader
) -> list[EntryView]:
    """The entries as ``reader`` may see them; :class:`AlteredEntry` for the first one altered
    behind the ledger's back (a time no append writes): refused by name, never shown (D-11)."""
    refuse_altered(entries)
    states = await audit.ledger.client_states(
        e.columns.client_id for e in entries if e.columns.client_id is not None
    )
    views: list[EntryView] = []
    for stored in entries:
        client = stored.columns.client_id
        state = states.get(client, ClientDataState.ACTIVE) if client else ClientDataState.ACTIVE
        event, view = audit.policy.view(
            stored.entry.event, client_state=state, reader_roles=reader.roles
        )
        views.append(EntryView(stored, event, view))
    return views
