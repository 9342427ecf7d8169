"""Ledger entries as a reader may see them (D-04 masking, D-11 need to know)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from branchline_audit.application.context import AuditContext, TrailReader
from branchline_audit.application.signed_leaves import unsigned_history
from branchline_audit.domain.personal import ClientDataState, View, data_subject_of
from branchline_audit.domain.verification import ServedCheck, StoredEntry, refuse_altered


@dataclass(frozen=True)
class EntryView:
    stored: StoredEntry
    event: dict[str, Any]
    view: View


async def views_of(
    audit: AuditContext,
    entries: Sequence[StoredEntry],
    reader: TrailReader,
    check: ServedCheck | None = None,
) -> list[EntryView]:
    """The entries as ``reader`` may see them; :class:`AlteredEntry` for the first one altered
    behind the ledger's back (a time no append writes, or stored content that is not what
    its hash covers: :class:`ServedCheck`; ``check`` carries the entry before them when
    they are a later page of one read): refused by name, never shown (D-11); then
    :class:`UnsignedHistory` when the signed checkpoint read with them contradicts the
    ledger (a rewrite with every later hash recomputed, :mod:`signed_leaves`, Round 28)."""
    refuse_altered(entries, check)
    unsigned = await unsigned_history(audit, entries)
    if unsigned is not None:
        raise unsigned
    return await checked_views_of(audit, entries, reader)


async def checked_views_of(
    audit: AuditContext, entries: Sequence[StoredEntry], reader: TrailReader
) -> list[EntryView]:
    """:func:`views_of` for entries the caller has checked already (:class:`ServedCheck`)."""
    # a client's entries by their client id, a member of staff's by ``#staff/<id>`` (D-04)
    subjects = [data_subject_of(e.entry.event) for e in entries]
    states = await audit.ledger.client_states(s for s in subjects if s is not None)
    views: list[EntryView] = []
    for stored, subject in zip(entries, subjects, strict=True):
        state = states.get(subject, ClientDataState.ACTIVE) if subject else ClientDataState.ACTIVE
        event, view = audit.policy.view(
            stored.entry.event, client_state=state, reader_roles=reader.roles
        )
        views.append(EntryView(stored, event, view))
    return views
