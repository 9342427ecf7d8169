"""Retention (D-11): drop the payloads of entries past their profile's retention period.

Only ``branchline audit prune`` calls this, through the pruner role. Hashes, positions and
checkpoints stay, so the ledger keeps verifying; a client's records count from the end of the
relationship recorded in the ledger (an active client is never pruned); clients under a
standing legal hold (recorded in the ledger) are never pruned; a member of staff's records
count from the end of their employment (never pruned while they are employed) and are never
pruned while a hold stands on them or on a client their gifts name
(:mod:`branchline_audit.domain.staff`); the prune appends an ``audit.pruned`` entry naming the
positions, in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from branchline_audit.application.ports import AuditLedger
from branchline_audit.domain.records import (
    AUDIT_PRUNED,
    position_ranges,
    prune_record,
    pruned_marker,
    rfc3339,
)
from branchline_audit.domain.relationships import (
    HOLD_TYPES,
    RELATIONSHIP_TYPES,
    held_clients,
    relationship_ends,
    standing_holds,
)
from branchline_audit.domain.retention import (
    ClientRetentionState,
    RetentionError,
    RetentionPolicy,
)
from branchline_audit.domain.staff import StaffRetentionState, staff_of_entry
from branchline_audit.domain.verification import AlteredEntry, ServedCheck, StoredEntry
from branchline_shared.clock import Clock
from branchline_shared.events.sealing_keys import staff_key_id

PAGE_SIZE = 5000
log = logging.getLogger(__name__)


@dataclass
class PruneOutcome:
    pruned: int = 0
    held_clients_skipped: set[str] = field(default_factory=set)
    """The held subjects whose due entries were kept: clients by id, members of staff as
    ``#staff/<staff_id>`` (as their holds name them)."""
    cutoffs: dict[str, str] = field(default_factory=dict)
    ranges: list[list[int]] = field(default_factory=list)
    altered_skipped: dict[int, str] = field(default_factory=dict)
    """Candidates altered behind the ledger's back (a time no append writes), by position,
    with why: never pruned, so that verify still names them (D-11, #12)."""


async def prune_expired(
    ledger: AuditLedger,
    retention: RetentionPolicy,
    clock: Clock,
    *,
    actor_id: str,
    client_id: str | None = None,
    dry_run: bool = False,
) -> PruneOutcome:
    state = await retention_state(ledger, client_id)
    if client_id is not None and state.is_held(client_id):
        raise RetentionError(
            f"client {client_id} is under legal hold: its records may not be pruned (D-11)"
        )
    # --client prunes that client's entries only: no member of staff's (D-11)
    staff = await ledger.staff_retention() if client_id is None else StaffRetentionState()
    now = clock.now()
    cutoffs = retention.cutoffs(now)
    outcome = PruneOutcome(cutoffs={p: rfc3339(c) for p, c in cutoffs.items()})
    markers: dict[int, dict[str, Any]] = {}
    latest = max(cutoffs.values())
    # Only a client whose relationship ended before the latest cutoff can have an entry due
    # (a client's entries count from that end, under any profile's cutoff): the read skips
    # every other client's, which no run would prune (#12; held ones are read and reported).
    due = sorted(c for c, end in state.relationship_ends.items() if end < latest)
    after = 0
    # A candidate's times, columns and event are what its hash covers, or it is skipped by
    # name (an entry altered to a plausible time could otherwise be pruned early, D-11, #12).
    check = ServedCheck()
    while True:
        page = await ledger.expired_candidates(
            before=latest, after_position=after, limit=PAGE_SIZE, clients=due
        )
        for stored in page:
            altered = check.altered(stored)
            if altered is not None and _decided_by(stored):
                # A hold or relationship end the facts' query did not select (its type or
                # client column altered away) or did not see so: the facts decided by are
                # not the ledger's, so nothing is pruned (D-11, #12).
                raise RetentionError(
                    f"nothing is pruned: {altered.detail}; it is a "
                    f"{_decided_by(stored)} entry, which the prune decides by"
                )
            if altered is not None:
                log.warning("prune skips an altered entry: %s", altered.detail)
                outcome.altered_skipped[stored.entry.position] = altered.detail
                continue
            columns = stored.columns
            if columns.event_type == AUDIT_PRUNED:
                continue  # prune records are what keeps pruned entries verifiable
            if client_id is not None and columns.client_id != client_id:
                continue
            appended_at = datetime.fromisoformat(stored.entry.appended_at)
            if columns.client_id is None:
                staff_id = staff_of_entry(stored.entry.event)
                if staff_id is not None:
                    if not retention.client_record_expired(
                        relationship_end=staff.employment_ends.get(staff_id),
                        branch_id=columns.branch_id,
                        now=now,
                    ):
                        continue  # still employed, or their retention has not run
                    if staff.held_by(staff_id, state.held):
                        outcome.held_clients_skipped.add(staff_key_id(staff_id))
                        continue
                elif not retention.expired(
                    appended_at=appended_at, branch_id=columns.branch_id, now=now
                ):
                    continue
            elif not retention.client_record_expired(
                relationship_end=state.relationship_ends.get(columns.client_id),
                branch_id=columns.branch_id,
                now=now,
            ):
                continue
            if state.is_held(columns.client_id):
                assert columns.client_id is not None
                outcome.held_clients_skipped.add(columns.client_id)
                continue
            markers[stored.entry.position] = pruned_marker(stored.entry.event, pruned_at=now)
        if len(page) < PAGE_SIZE:
            break
        # a keyset, not a bound: the next page starts after this entry in (appended_at,
        # position) order, the order the candidates' index keeps (#12)
        after = page[-1].entry.position
    # candidates come in time order; what is decided and reported stays in position order
    outcome.altered_skipped = dict(sorted(outcome.altered_skipped.items()))
    outcome.ranges = position_ranges(markers)
    if dry_run:
        outcome.pruned = len(markers)
        return outcome
    # Recorded even when nothing was due: who ran a prune, when and under which cutoffs.
    record = prune_record(
        now=now,
        actor_id=actor_id,
        ranges=outcome.ranges,
        count=len(markers),
        cutoffs=outcome.cutoffs,
        held_clients_skipped=sorted(outcome.held_clients_skipped),
    )
    outcome.pruned = await ledger.prune(markers, now=now, record=record)
    return outcome


_FACT_TYPES = frozenset((*RELATIONSHIP_TYPES, *HOLD_TYPES))


def _decided_by(stored: StoredEntry) -> str | None:
    """The type of a relationship end or legal hold ``stored`` holds, by its event or by its
    type column (either may be the altered one), or None."""
    claimed = stored.entry.event.get("type"), stored.columns.event_type
    return next((t for t in claimed if t in _FACT_TYPES), None)


async def retention_state(
    ledger: AuditLedger, client_id: str | None = None
) -> ClientRetentionState:
    """Relationship ends and standing holds, as the ledger records them (D-09, D-11); one of
    them altered behind the ledger's back (a time no append writes) refuses the prune that
    would decide by it, before anything is written (RetentionError, D-11)."""
    try:
        relationships = await ledger.facts(RELATIONSHIP_TYPES, client_id)
        holds = await ledger.facts(HOLD_TYPES, client_id)
    except AlteredEntry as altered:
        raise RetentionError(f"nothing is pruned: {altered.detail}") from None
    return ClientRetentionState(
        relationship_ends=relationship_ends(relationships),
        held=held_clients(standing_holds(holds)),
    )
