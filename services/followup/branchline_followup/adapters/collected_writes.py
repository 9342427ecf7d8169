"""What a unit of work collected to write before it commits, in ONE statement (#12).

A one-event batch sent its collected writes as five statements (the clients' facts, the
journal rows, the tasks, the timers, the timeline), each a round trip. Here each is a
data-modifying CTE of one statement over arrays (``unnest``), so a batch sends one. The parts
write different tables, and no table has a trigger or a foreign key to another, so what one
part writes is never what another reads: running them in one statement (one snapshot) writes
what running them in turn wrote. Within a part each row must be a different row (a statement
cannot change a row twice): the facts and the tasks are one row per client and task (the
latest saved), the journal and the timeline skip a repeat (``DO NOTHING``), and timer syncs go
into the statement only when each task is synced once (:func:`merged_timer_syncs`), and the
client page's consents and assessments are reduced to the one a row would end with
(:func:`latest_console_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from branchline_followup.adapters import read_models
from branchline_followup.adapters.console_read_models import (
    ASSESSMENT_UPSERT,
    CONSENT_UPSERT,
    ConsoleRow,
)
from branchline_followup.adapters.read_models import FACT_COLUMNS, TASK_COLUMNS
from branchline_followup.domain import FollowupTask
from branchline_followup.domain.records import ClientFacts

_FACT_TYPES = {
    "client_type": "text",
    "rm_id": "text",
    "branch_id": "text",
    "lifecycle_stage": "text",
    "registered_at": "timestamptz",
    "last_event_at": "timestamptz",
    "last_contact_at": "timestamptz",
    "risk_tolerance": "text",
    "risk_level": "text",
    "identity_verified_at": "timestamptz",
    "first_business_at": "timestamptz",
    "last_business_at": "timestamptz",
    "assets_under_management": "numeric",
    "account_closed_at": "timestamptz",
    "stage_as_of": "timestamptz",
    "stage_changes_at": "timestamptz",
    "last_business_event_id": "uuid",
}
_TASK_TYPES = {
    "id": "uuid",
    "kind": "text",
    "rule": "text",
    "client_id": "text",
    "branch_id": "text",
    "assignee": "text",
    "subject": "text",
    "opened_at": "timestamptz",
    "due_at": "timestamptz",
    "deadline_profile": "text",
    "source_event_id": "uuid",
    "status": "text",
    "closed_at": "timestamptz",
    "closed_by_event_id": "uuid",
    "close_reason": "text",
    "escalated_to": "text",
}

_CLIENTS = (
    f"INSERT INTO fu_clients (client_id, {', '.join(FACT_COLUMNS)}) "  # noqa: S608 - fixed identifiers, bound values
    "SELECT * FROM unnest({0}::text[], "
    + ", ".join(f"{{{i + 1}}}::{_FACT_TYPES[c]}[]" for i, c in enumerate(FACT_COLUMNS))
    + ") ON CONFLICT (client_id) DO UPDATE SET "
    f"{', '.join(f'{c} = EXCLUDED.{c}' for c in FACT_COLUMNS)}, updated_at = now()"
)
_JOURNAL = (
    "INSERT INTO fu_client_events "
    "(event_id, client_id, source, global_position, recorded_ms, envelope) "
    "SELECT e, c, s, g, r, v::jsonb FROM unnest({0}::uuid[], {1}::text[], {2}::text[], "
    "{3}::bigint[], {4}::bigint[], {5}::text[]) AS j(e, c, s, g, r, v) "
    "ON CONFLICT (event_id) DO NOTHING"
)
_TASKS = (
    f"INSERT INTO fu_tasks ({', '.join(TASK_COLUMNS)}) SELECT * FROM unnest("  # noqa: S608 - fixed identifiers, bound values
    + ", ".join(f"{{{i}}}::{_TASK_TYPES[c]}[]" for i, c in enumerate(TASK_COLUMNS))
    + ") ON CONFLICT (id) DO UPDATE SET "
    f"{', '.join(f'{c} = EXCLUDED.{c}' for c in TASK_COLUMNS if c != 'id')}"
)
_TIMERS_DROPPED = (
    "DELETE FROM fu_timers WHERE task_id = ANY({5}::uuid[]) AND fired_at IS NULL "
    "AND NOT (id = ANY({0}::uuid[]))"
)
_TIMERS_WANTED = (
    "INSERT INTO fu_timers (id, task_id, client_id, kind, fire_at) SELECT * FROM "
    "unnest({0}::uuid[], {1}::uuid[], {2}::text[], {3}::text[], {4}::timestamptz[]) "
    "ON CONFLICT (id) DO UPDATE SET fire_at = EXCLUDED.fire_at, "
    "fired_at = CASE WHEN fu_timers.fire_at = EXCLUDED.fire_at THEN fu_timers.fired_at END, "
    "fired_event_id = CASE WHEN fu_timers.fire_at = EXCLUDED.fire_at "
    "THEN fu_timers.fired_event_id END"
)
""":data:`.read_models.SYNC_TIMERS` as two parts (its DELETE and its upsert, as there)."""
_TIMELINE = (
    "INSERT INTO fu_client_timeline "
    "(client_id, occurred_at, event_id, type, branch_id, actor_id, actor_role) "
    "SELECT * FROM unnest({0}::text[], {1}::timestamptz[], {2}::uuid[], {3}::text[], "
    "{4}::text[], {5}::text[], {6}::text[]) ON CONFLICT DO NOTHING"
)
_APPLIED = (
    "INSERT INTO fu_applied_events (event_id, type, source, global_position) "
    "SELECT event_id, type, source, global_position "
    "FROM unnest({0}::uuid[], {1}::text[], {2}::text[], {3}::bigint[]) WITH ORDINALITY "
    "AS e(event_id, type, source, global_position, n) ORDER BY n "
    "ON CONFLICT (event_id) DO NOTHING"
)
"""The applied records of events the unit appended itself (in the order appended, as
:func:`.read_models.mark_all_applied` records a batch)."""
_CONSENTS = (
    "INSERT INTO fu_client_consents AS c "
    "(client_id, purpose, granted, changed_at, expires_at) "
    "SELECT * FROM unnest({0}::text[], {1}::text[], {2}::boolean[], {3}::timestamptz[], "
    "{4}::timestamptz[]) ON CONFLICT (client_id, purpose) DO UPDATE "
    "SET granted = EXCLUDED.granted, changed_at = EXCLUDED.changed_at, "
    "expires_at = EXCLUDED.expires_at WHERE c.changed_at <= EXCLUDED.changed_at"
)
""":data:`.console_read_models.CONSENT_UPSERT` over arrays (the same later-instant rule)."""
_ASSESSMENTS = (
    "INSERT INTO fu_client_assessments AS a "
    "(client_id, level, assessed_at, valid_until, event_id) "
    "SELECT * FROM unnest({0}::text[], {1}::text[], {2}::timestamptz[], {3}::timestamptz[], "
    "{4}::uuid[]) ON CONFLICT (client_id) DO UPDATE "
    "SET level = EXCLUDED.level, assessed_at = EXCLUDED.assessed_at, "
    "valid_until = EXCLUDED.valid_until, event_id = EXCLUDED.event_id "
    "WHERE a.assessed_at <= EXCLUDED.assessed_at"
)
""":data:`.console_read_models.ASSESSMENT_UPSERT` over arrays (the same later-instant rule)."""

_CONSOLE_KEYS: dict[str, tuple[int, int]] = {CONSENT_UPSERT: (2, 3), ASSESSMENT_UPSERT: (1, 2)}
"""Each console upsert's row key (its first ``n`` arguments) and its instant's argument."""


class CollectedStatement:
    """One statement made of parts, each a data-modifying CTE whose placeholders ``{i}`` are
    numbered from the arguments already added."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.args: list[Any] = []

    def add(self, template: str, columns: Sequence[Sequence[Any]]) -> None:
        """A part over ``columns`` (one list per placeholder, ``{i}`` is ``columns[i]``)."""
        first = len(self.args) + 1
        placeholders = [f"${first + i}" for i in range(len(columns))]
        self._parts.append(template.format(*placeholders))
        self.args += [list(c) for c in columns]

    def add_shared(self, templates: Sequence[str], columns: Sequence[Sequence[Any]]) -> None:
        """Several parts over the same arguments (the timers' DELETE and upsert)."""
        first = len(self.args) + 1
        placeholders = [f"${first + i}" for i in range(len(columns))]
        self._parts += [t.format(*placeholders) for t in templates]
        self.args += [list(c) for c in columns]

    @property
    def sql(self) -> str | None:
        if not self._parts:
            return None
        ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(self._parts))
        return f"WITH {ctes} SELECT 1"


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


def add_clients(statement: CollectedStatement, facts: Sequence[ClientFacts]) -> None:
    if facts:
        rows = [read_models.client_row(f) for f in facts]
        statement.add(_CLIENTS, _columns(rows, len(FACT_COLUMNS) + 1))


def add_journal(statement: CollectedStatement, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows``: :func:`.client_journal.journal_row`'s (the envelope as a JSON object)."""
    if rows:
        encoded = [(*row[:5], orjson.dumps(row[5]).decode()) for row in rows]
        statement.add(_JOURNAL, _columns(encoded, 6))


def add_tasks(statement: CollectedStatement, tasks: Sequence[FollowupTask]) -> None:
    if tasks:
        rows = [read_models.task_row(t) for t in tasks]
        statement.add(_TASKS, _columns(rows, len(TASK_COLUMNS)))


def merged_timer_syncs(syncs: Sequence[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """:func:`.read_models.sync_timers_args` of several syncs as one, when no task is synced
    twice (a timer belongs to one task, so then no row is changed twice and the syncs touch
    different rows: one at once is each in turn); None otherwise."""
    task_ids = [t for sync in syncs for t in sync[5]]
    if len(set(task_ids)) != len(task_ids):
        return None
    return tuple([v for sync in syncs for v in sync[i]] for i in range(6))


def add_timers(statement: CollectedStatement, merged: tuple[Any, ...]) -> None:
    statement.add_shared((_TIMERS_DROPPED, _TIMERS_WANTED), merged)


def add_timeline(statement: CollectedStatement, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        statement.add(_TIMELINE, _columns(rows, 7))


def add_applied(statement: CollectedStatement, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows``: :func:`.read_models.applied_row`'s."""
    if rows:
        statement.add(_APPLIED, _columns(rows, 4))


def latest_console_rows(rows: Sequence[ConsoleRow]) -> dict[str, list[tuple[Any, ...]]]:
    """Each statement's rows reduced to one per row key: the one the upserts run in turn, as
    made, would leave (#12: a statement cannot change a row twice). An upsert replaces the row
    when its instant is not earlier, so of a key's rows the last with the latest instant is
    what the table ends with, if the table's own is not later (which the statement's ``WHERE``
    still decides)."""
    latest: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
    for sql, args in rows:
        width, instant = _CONSOLE_KEYS[sql]
        kept = latest.setdefault(sql, {})
        key = args[:width]
        if key not in kept or args[instant] >= kept[key][instant]:
            kept[key] = args
    return {sql: list(kept.values()) for sql, kept in latest.items()}


def add_console(statement: CollectedStatement, rows: Sequence[ConsoleRow]) -> None:
    """The client page's consent and assessment upserts (:func:`.console_read_models.
    console_rows`'s), as parts of the statement."""
    for sql, many in latest_console_rows(rows).items():
        template = _CONSENTS if sql == CONSENT_UPSERT else _ASSESSMENTS
        statement.add(template, _columns(many, 5))
