"""What the ledger stores besides the events from Kafka, and the columns derived from an event.

- ``audit.read`` (D-11): every audit API request is itself an entry: who, which endpoint and
  filters, the stated purpose, when. It has no Kafka event, so the ledger makes an envelope-like
  JSON object for it (generated event id, ``source`` ``audit``).
- ``audit.pruned`` (D-11 retention): a prune names the positions whose payload it dropped, so a
  verifier can tell a lawful prune from a payload removed behind the ledger's back.
- A pruned entry keeps its envelope without ``data`` plus a ``redaction`` member
  (:func:`pruned_marker`); its hash, prev_hash and position stay as they were.

The index columns (``event_id``, ``event_type``, ``client_id``, ...) are copies of fields of the
event made for fast queries. They are not hashed, so :func:`index_columns` is the one definition
both the writer and the verifier use: a column that disagrees with its event is tampering.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

AUDIT_SOURCE = "audit"
AUDIT_STREAM = "audit-ledger"
AUDIT_READ = "audit.read"
AUDIT_PRUNED = "audit.pruned"
AUDIT_TYPE_PREFIX = "audit."

REDACTION_KEY = "redaction"
RETENTION_REASON = "retention"


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z``, microseconds only when present (the envelope's JSON form)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time must carry an offset")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class IndexColumns:
    """The queryable copies of an event's fields, as the ledger table stores them."""

    event_id: uuid.UUID
    event_type: str
    client_id: str | None
    actor_id: str | None
    branch_id: str | None
    occurred_at: datetime | None


class NotAnEnvelope(ValueError):
    """An event without the fields every ledger entry needs (``event_id``, ``type``)."""


IndexRow = tuple[uuid.UUID, str, str | None, str | None, str | None, datetime | None]
""":class:`IndexColumns`' values in its order, as a tuple (the ledger writer's row part)."""


def index_columns(event: Mapping[str, Any]) -> IndexColumns:
    """The index columns of ``event`` (raises :class:`NotAnEnvelope` when it has none)."""
    return IndexColumns(*index_row(event))


def index_row(
    event: Mapping[str, Any], parse_id: Callable[[str], uuid.UUID] = uuid.UUID
) -> IndexRow:
    """:func:`index_columns` as a tuple, without an object per event (#12). ``parse_id``
    makes the event id's UUID from its text: any parser giving ``uuid.UUID``'s value and
    raising ``ValueError`` where it does (the writer passes one that is faster for
    canonical texts)."""
    try:
        event_id = parse_id(str(event["event_id"]))
        event_type = event["type"]
    except (KeyError, ValueError) as error:
        raise NotAnEnvelope(f"an entry needs an event_id and a type: {error}") from error
    if not isinstance(event_type, str) or not event_type:
        raise NotAnEnvelope("an entry's type must be a non-empty string")
    actor = event.get("actor")
    occurred = event.get("occurred_at")
    try:
        occurred_at = datetime.fromisoformat(occurred) if isinstance(occurred, str) else None
    except ValueError as error:
        raise NotAnEnvelope(f"occurred_at is not an RFC 3339 time: {occurred!r}") from error
    if occurred_at is not None and occurred_at.tzinfo is None:
        raise NotAnEnvelope("occurred_at must carry an offset")
    # A text column holds a string value only; each test written out, not a call per column
    # per appended entry (#12).
    client_id = event.get("client_id")
    actor_id = actor.get("id") if type(actor) is dict or isinstance(actor, Mapping) else None
    branch_id = event.get("branch_id")
    return (
        event_id,
        event_type,
        client_id if isinstance(client_id, str) else None,
        actor_id if isinstance(actor_id, str) else None,
        branch_id if isinstance(branch_id, str) else None,
        occurred_at,
    )


def audit_event(
    *,
    event_type: str,
    now: datetime,
    actor_id: str,
    actor_role: str,
    data: Mapping[str, Any],
    client_id: str | None = None,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """An envelope-like event that the audit service itself writes to its ledger."""
    moment = rfc3339(now)
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "type": event_type,
        "schema_version": 1,
        "occurred_at": moment,
        "recorded_at": moment,
        "source": AUDIT_SOURCE,
        "actor": {"id": actor_id, "role": actor_role},
        "client_id": client_id,
        "stream_id": AUDIT_STREAM,
        "data": dict(data),
    }


def read_event(
    *,
    now: datetime,
    subject: str,
    roles: Iterable[str],
    endpoint: str,
    filters: Mapping[str, Any],
    purpose: str | None,
) -> dict[str, Any]:
    """The ``audit.read`` entry of one audit API request (D-11: who, what, when, why)."""
    role_list = sorted(roles)
    shown = {k: v for k, v in sorted(filters.items()) if v is not None}
    client = shown.get("client_id")
    return audit_event(
        event_type=AUDIT_READ,
        now=now,
        actor_id=subject,
        actor_role=",".join(role_list) or "none",
        client_id=client if isinstance(client, str) else None,
        data={"endpoint": endpoint, "filters": shown, "purpose": purpose, "roles": role_list},
    )


def pruned_marker(event: Mapping[str, Any], *, pruned_at: datetime) -> dict[str, Any]:
    """What stays of an event whose retention period ran out: the envelope without ``data``."""
    kept = {k: v for k, v in event.items() if k != "data"}
    kept[REDACTION_KEY] = {"reason": RETENTION_REASON, "pruned_at": rfc3339(pruned_at)}
    return kept


def is_pruned_marker(event: Mapping[str, Any]) -> bool:
    redaction = event.get(REDACTION_KEY)
    return (
        "data" not in event
        and isinstance(redaction, Mapping)
        and redaction.get("reason") == RETENTION_REASON
    )


def position_ranges(positions: Iterable[int]) -> list[list[int]]:
    """Sorted positions as inclusive ``[first, last]`` runs (how a prune record names them)."""
    runs: list[list[int]] = []
    for position in sorted(set(positions)):
        if runs and runs[-1][1] == position - 1:
            runs[-1][1] = position
        else:
            runs.append([position, position])
    return runs


def prune_record(
    *,
    now: datetime,
    actor_id: str,
    ranges: Sequence[Sequence[int]],
    count: int,
    cutoffs: Mapping[str, str],
    held_clients_skipped: Sequence[str],
) -> dict[str, Any]:
    """The ``audit.pruned`` entry a prune appends in the same transaction as the prune."""
    return audit_event(
        event_type=AUDIT_PRUNED,
        now=now,
        actor_id=actor_id,
        actor_role="retention",
        data={
            "positions": [list(r) for r in ranges],
            "count": count,
            "cutoffs": dict(sorted(cutoffs.items())),
            "held_clients_skipped": sorted(held_clients_skipped),
        },
    )


def pruned_ranges_of(event: Mapping[str, Any]) -> list[tuple[int, int]]:
    """The position runs an ``audit.pruned`` entry names (empty for any other entry)."""
    if event.get("type") != AUDIT_PRUNED or event.get("source") != AUDIT_SOURCE:
        return []
    data = event.get("data")
    if not isinstance(data, Mapping):
        return []
    runs: list[tuple[int, int]] = []
    for run in data.get("positions") or []:
        if (
            isinstance(run, list)
            and len(run) == 2
            and all(isinstance(p, int) and not isinstance(p, bool) for p in run)
        ):
            runs.append((run[0], run[1]))
    return runs
