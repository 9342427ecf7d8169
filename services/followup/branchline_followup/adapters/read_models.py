"""SQL of the followup read models, write side (asyncpg). No HTTP or Kafka concerns here.

Tables are named without a schema: the connection's search_path chooses the live read models
or a rebuild's copy (see :mod:`.pg_schemas`).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from branchline_followup.adapters.json_rows import rows_argument
from branchline_followup.domain import DurableTimer, FollowupTask

# ClientFacts and DueTimer live in the domain (ADR-0013); still named here for the queries.
from branchline_followup.domain.records import ClientFacts as ClientFacts
from branchline_followup.domain.records import DueTimer as DueTimer
from branchline_followup.domain.tasks import task_of_values
from branchline_shared.events.catalogue import ComplaintEvent, VisitEvent
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import Decoded, payload_as
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection

TASK_COLUMNS = (
    "id",
    "kind",
    "rule",
    "client_id",
    "branch_id",
    "assignee",
    "subject",
    "opened_at",
    "due_at",
    "deadline_profile",
    "source_event_id",
    "status",
    "closed_at",
    "closed_by_event_id",
    "close_reason",
    "escalated_to",
)
_TASK_SELECT = ", ".join(TASK_COLUMNS)


APPLIED_INSERT = (
    "INSERT INTO fu_applied_events (event_id, type, source, global_position) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING"
)


def applied_row(event: RecordedEvent, position: SourcePosition | None) -> tuple[Any, ...]:
    """The arguments of :data:`APPLIED_INSERT` for ``event``."""
    return (
        event.event_id,
        event.type,
        position.source if position else event.source,
        position.global_position if position else None,
    )


async def mark_applied(
    conn: PgConnection, event: RecordedEvent, position: SourcePosition | None = None
) -> bool:
    """Record that ``event`` is applied, with its place in the store that wrote it (what
    reconcile compares); False when it already was (a redelivery)."""
    inserted = await conn.fetchval(
        APPLIED_INSERT + " RETURNING true", *applied_row(event, position)
    )
    return bool(inserted)


async def mark_all_applied(
    conn: PgConnection, events: Sequence[tuple[RecordedEvent, SourcePosition | None]]
) -> set[uuid.UUID]:
    """:func:`mark_applied` for a batch in one statement (#12: one round trip, not one per
    event); the ids recorded now. A repeated id is recorded once (ON CONFLICT DO NOTHING
    skips a row that conflicts with one the same statement inserted)."""
    if not events:
        return set()
    rows = await conn.fetch(
        _MARK_ALL_APPLIED, rows_argument([applied_row(e, p) for e, p in events])
    )
    return {r["event_id"] for r in rows}


_MARK_ALL_APPLIED = (
    "INSERT INTO fu_applied_events (event_id, type, source, global_position) "
    # In the batch's order: applied_seq is the order reconcile checks per stream.
    "SELECT (r->>0)::uuid, r->>1, r->>2, (r->>3)::bigint "
    "FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY n "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
"""The batch's records, its rows (:func:`applied_row`'s) one JSON argument (#12: no array
checked in Python, :func:`.json_rows.rows_argument`)."""

MARK_ALL_APPLIED_LOCKING = """
WITH given AS (
    SELECT (r->>0)::uuid AS event_id, r->>1 AS type, r->>2 AS source,
           (r->>3)::bigint AS global_position, r->>4 AS locker, n
    FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(r, n)
), marked AS (
    INSERT INTO fu_applied_events (event_id, type, source, global_position)
    SELECT event_id, type, source, global_position FROM given ORDER BY n
    ON CONFLICT (event_id) DO NOTHING RETURNING event_id
), recorded AS (
    SELECT coalesce(array_agg(event_id), '{}') AS ids FROM marked
), locked AS (
    SELECT pg_advisory_xact_lock($3, hashtext(c.client_id)) AS held
    FROM recorded r, jsonb_array_elements_text($2::text::jsonb) WITH ORDINALITY AS c(client_id, n)
    WHERE EXISTS (
        SELECT 1 FROM given l WHERE l.locker = c.client_id AND l.event_id = ANY(r.ids)
    )
    ORDER BY c.n
)"""
"""The parts of a statement that does :func:`mark_all_applied`, then takes the locks of the
clients ($2, in the caller's order) of the events recorded now (each row's fifth value: the
event's client to lock, or NULL); the rows and the clients are JSON arguments (#12,
:mod:`.json_rows`); ``recorded`` holds the ids recorded now, and the locks are taken when
``locked`` is read (:data:`.read_ahead.MARK_APPLIED_LOCKING_READING`: its count). ``recorded``
aggregates every record before a lock is taken (a data-modifying CTE's rows are otherwise
produced as they are read, in no order defined against the other parts), so a unit never waits
for a lock with a record still to make, as with two statements; the locks are taken one by one
in ``n``'s order (volatile functions are evaluated after the ORDER BY's sort), the order of
:func:`.pg_schemas.lock_clients`. What needs the locks reads after them: in a later statement,
or in a volatile function the statement calls with the locks' count (followup migration 018)."""


def locking_rows(
    events: Sequence[tuple[RecordedEvent, SourcePosition | None]], lockers: Sequence[str | None]
) -> str:
    """The first argument of :data:`MARK_ALL_APPLIED_LOCKING`: each event's
    :func:`applied_row` and the client to lock for it (None: none)."""
    return rows_argument(
        [(*applied_row(e, p), c) for (e, p), c in zip(events, lockers, strict=True)]
    )


async def applied_ids(conn: PgConnection, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT event_id FROM fu_applied_events WHERE event_id = ANY($1::uuid[])",
        list(event_ids),
    )
    return {r["event_id"] for r in rows}


# --- clients -----------------------------------------------------------------------------------

FACT_COLUMNS = (
    "client_type",
    "rm_id",
    "branch_id",
    "lifecycle_stage",
    "registered_at",
    "last_event_at",
    "last_contact_at",
    "risk_tolerance",
    "risk_level",
    "identity_verified_at",
    "first_business_at",
    "last_business_at",
    "assets_under_management",
    "account_closed_at",
    "stage_as_of",
    "stage_changes_at",
    "last_business_event_id",
)


async def fetch_client(conn: PgConnection, client_id: str) -> ClientFacts | None:
    row = await conn.fetchrow(
        f"SELECT client_id, {', '.join(FACT_COLUMNS)} FROM fu_clients WHERE client_id = $1",  # noqa: S608 - fixed identifiers, bound values
        client_id,
    )
    return None if row is None else facts_from_row(row)


def facts_from_row(row: Any) -> ClientFacts:
    """The facts a ``fu_clients`` row holds (``client_id`` and :data:`FACT_COLUMNS`): the one
    decoder of the write side and of the views (:mod:`.queries`)."""
    return ClientFacts(**dict(row))


_SAVE_CLIENT = (
    f"INSERT INTO fu_clients (client_id, {', '.join(FACT_COLUMNS)}) "  # noqa: S608 - fixed identifiers, bound values
    f"VALUES ($1, {', '.join(f'${i}' for i in range(2, len(FACT_COLUMNS) + 2))}) "
    f"ON CONFLICT (client_id) DO UPDATE SET "
    f"{', '.join(f'{c} = EXCLUDED.{c}' for c in FACT_COLUMNS)}, updated_at = now()"
)


_FACT_VALUES = operator.attrgetter(*FACT_COLUMNS)


def client_row(facts: ClientFacts) -> list[Any]:
    """The values of ``client_id`` and :data:`FACT_COLUMNS` for ``facts``."""
    return [facts.client_id, *_FACT_VALUES(facts)]


async def save_client(conn: PgConnection, facts: ClientFacts) -> None:
    await conn.execute(_SAVE_CLIENT, *client_row(facts))


async def save_clients(conn: PgConnection, facts: Sequence[ClientFacts]) -> None:
    """:func:`save_client` for each, in one round trip (#12)."""
    if facts:
        await conn.executemany(_SAVE_CLIENT, [client_row(f) for f in facts])


async def claim_due_stage_changes(conn: PgConnection, now: datetime, limit: int) -> list[str]:
    """Clients whose stage changes by time at or before ``now``, locked until the caller's
    transaction ends; clients another runner holds are skipped (ADR-0008)."""
    rows = await conn.fetch(
        "SELECT client_id FROM fu_clients WHERE stage_changes_at <= $1 "
        "ORDER BY stage_changes_at, client_id LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [r["client_id"] for r in rows]


async def count_due_stage_changes(conn: PgConnection, now: datetime) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM fu_clients WHERE stage_changes_at <= $1", now)
    )


# --- tasks and timers --------------------------------------------------------------------------


def task_from_row(row: Any, columns: Iterable[str] = TASK_COLUMNS) -> FollowupTask:
    """The task a ``fu_tasks`` row holds: the one decoder of the write side and of the views
    (:mod:`.queries`), which select fewer ``columns``; raises if the row is not a task."""
    return task_of_values({c: row[c] for c in columns})  # validated unless plain (#12)


async def open_tasks_of(conn: PgConnection, client_id: str) -> list[FollowupTask]:
    rows = await conn.fetch(
        f"SELECT {_TASK_SELECT} FROM fu_tasks WHERE client_id = $1 AND status = 'open' "  # noqa: S608 - fixed identifiers, bound values
        "ORDER BY opened_at, id",
        client_id,
    )
    return [task_from_row(r) for r in rows]


async def fetch_tasks(
    conn: PgConnection, task_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, FollowupTask]:
    """:func:`fetch_task` for many tasks in one statement (#12); absent ones left out."""
    rows = await conn.fetch(
        f"SELECT {_TASK_SELECT} FROM fu_tasks WHERE id = ANY($1::uuid[])",  # noqa: S608 - fixed identifiers, bound values
        list(task_ids),
    )
    return {r["id"]: task_from_row(r) for r in rows}


async def fetch_tasks_caused_by(
    conn: PgConnection, source_event_ids: Sequence[uuid.UUID]
) -> list[FollowupTask]:
    """Every stored task that the events ``source_event_ids`` made due, in one statement
    (#12: by index ``fu_tasks_by_source``, one key per deciding event)."""
    rows = await conn.fetch(
        f"SELECT {_TASK_SELECT} FROM fu_tasks WHERE source_event_id = ANY($1::uuid[])",  # noqa: S608 - fixed identifiers, bound values
        list(source_event_ids),
    )
    return [task_from_row(r) for r in rows]


async def fetch_task(conn: PgConnection, task_id: uuid.UUID) -> FollowupTask | None:
    row = await conn.fetchrow(f"SELECT {_TASK_SELECT} FROM fu_tasks WHERE id = $1", task_id)  # noqa: S608 - fixed identifiers, bound values
    return None if row is None else task_from_row(row)


_SAVE_TASK = (
    f"INSERT INTO fu_tasks ({_TASK_SELECT}) "  # noqa: S608 - fixed identifiers, bound values
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(TASK_COLUMNS) + 1))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    f"{', '.join(f'{c} = EXCLUDED.{c}' for c in TASK_COLUMNS if c != 'id')}"
)


async def save_tasks(conn: PgConnection, tasks: Sequence[FollowupTask]) -> None:
    if not tasks:
        return
    await conn.executemany(_SAVE_TASK, [task_row(t) for t in tasks])


def task_row(t: FollowupTask) -> list[Any]:
    """The values of :data:`TASK_COLUMNS` for ``t``."""
    return [
        t.id,
        t.kind.value,
        t.rule.value,
        t.client_id,
        t.branch_id,
        t.assignee,
        t.subject,
        t.opened_at,
        t.due_at,
        t.deadline_profile,
        t.source_event_id,
        t.status.value,
        t.closed_at,
        t.closed_by_event_id,
        t.close_reason,
        t.escalated_to,
    ]


async def set_task_outcome(conn: PgConnection, task_id: uuid.UUID, outcome: str) -> None:
    await conn.execute("UPDATE fu_tasks SET outcome = $2 WHERE id = $1", task_id, outcome)


async def set_task_overdue(conn: PgConnection, task_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(
        "UPDATE fu_tasks SET overdue_at = COALESCE(overdue_at, $2) WHERE id = $1", task_id, at
    )


SYNC_TIMERS = """
WITH dropped AS (
    DELETE FROM fu_timers WHERE task_id = ANY($6::uuid[]) AND num_nulls(fired_at) = 1
        AND NOT (id = ANY($1::uuid[]))
)
INSERT INTO fu_timers (id, task_id, client_id, kind, fire_at)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT (id) DO UPDATE SET fire_at = EXCLUDED.fire_at, fired_at = NULL, fired_event_id = NULL
WHERE fu_timers.fire_at <> EXCLUDED.fire_at
"""
"""Each task's unfired timers made exactly its wanted ones (:func:`sync_timers_args`). A timer
whose instant moved is armed again; one wanted at the instant it has is left as it is, fired
or not (#12: it was rewritten with its own values, a new row version, in every index of the
table when its page had no room, for each unmoved timer of a task synced again).
``num_nulls(fired_at) = 1``: ``fired_at IS NULL`` kept off the partial index ``fu_timers_due``
(as :data:`.collected_writes._TIMERS_DROPPED`)."""


def sync_timers_args(
    changes: Sequence[tuple[FollowupTask, Sequence[DurableTimer]]],
) -> tuple[Any, ...]:
    wanted = [(t, task.client_id) for task, timers in changes for t in timers]
    return (
        [t.id for t, _ in wanted],
        [t.task_id for t, _ in wanted],
        [client_id for _, client_id in wanted],
        [t.kind.value for t, _ in wanted],
        [t.fire_at for t, _ in wanted],
        [task.id for task, _ in changes],
    )


async def sync_timers(
    conn: PgConnection, changes: Sequence[tuple[FollowupTask, Sequence[DurableTimer]]]
) -> None:
    """Make each task's unfired timers exactly its ``wanted``. A timer whose instant moved
    (the task was rescheduled) is armed again; a fired timer keeps its record. One statement
    for all the tasks (#12): the DELETE and the upsert touch different rows (a timer id
    belongs to one task), so running them together is running them in turn."""
    if changes:
        await conn.execute(SYNC_TIMERS, *sync_timers_args(changes))


async def record_timer_fired(
    conn: PgConnection,
    *,
    timer_id: uuid.UUID,
    task_id: uuid.UUID,
    client_id: str,
    kind: str,
    fire_at: datetime,
    event_id: uuid.UUID,
) -> None:
    """The timer fired at its instant and recorded ``event_id``; the row is created if the
    task closed (and dropped its unfired timers) before the event was applied.

    The overdue event of a deadline the task has moved from leaves the timer of the new
    deadline armed: a task is overdue again at its new deadline. An escalation is for good
    (D-08: the task keeps its supervisor and wants no second escalate timer), so its event
    is recorded on the task's escalate timer whatever instant that timer was armed for. The
    worker fires it before a late reschedule is applied, a rebuild or a client's
    re-projection applies the reschedule first (source order); both must end with the same
    fired row."""
    await conn.execute(
        """
        INSERT INTO fu_timers (id, task_id, client_id, kind, fire_at, fired_at, fired_event_id)
        VALUES ($1, $2, $3, $4, $5, $5, $6)
        ON CONFLICT (id) DO UPDATE SET fire_at = EXCLUDED.fire_at,
                                       fired_at = EXCLUDED.fired_at,
                                       fired_event_id = EXCLUDED.fired_event_id
        WHERE (fu_timers.fired_at IS NULL OR fu_timers.fired_event_id IS NULL)
          AND (fu_timers.fire_at = EXCLUDED.fire_at OR EXCLUDED.kind = 'escalate')
        """,
        timer_id,
        task_id,
        client_id,
        kind,
        fire_at,
        event_id,
    )


async def set_task_escalated(conn: PgConnection, task_id: uuid.UUID, to: str) -> None:
    await conn.execute(
        "UPDATE fu_tasks SET escalated_to = COALESCE(escalated_to, $2) WHERE id = $1", task_id, to
    )


async def mark_timer_fired(
    conn: PgConnection, task_id: uuid.UUID, kind: str, at: datetime, event_id: uuid.UUID | None
) -> None:
    await conn.execute(
        "UPDATE fu_timers SET fired_at = $3, fired_event_id = $4 "
        "WHERE task_id = $1 AND kind = $2 AND fired_at IS NULL",
        task_id,
        kind,
        at,
        event_id,
    )


async def claim_due_timers(conn: PgConnection, now: datetime, limit: int) -> list[DueTimer]:
    """Due, unfired timers, locked until the caller's transaction ends; timers another runner
    holds are skipped (ADR-0008)."""
    rows = await conn.fetch(
        "SELECT id, task_id, client_id, kind, fire_at FROM fu_timers "
        "WHERE fired_at IS NULL AND fire_at <= $1 ORDER BY fire_at, id LIMIT $2 "
        "FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [DueTimer(**dict(r)) for r in rows]


async def count_due_timers(conn: PgConnection, now: datetime) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM fu_timers WHERE fired_at IS NULL AND fire_at <= $1", now
        )
    )


async def consume_timer(conn: PgConnection, timer_id: uuid.UUID, at: datetime) -> None:
    """A timer that fired for nothing (its task closed or moved meanwhile)."""
    await conn.execute(
        "UPDATE fu_timers SET fired_at = $2 WHERE id = $1 AND fired_at IS NULL", timer_id, at
    )


async def dead_letter_timer(
    conn: PgConnection, timer_id: uuid.UUID, at: datetime, reason: str
) -> None:
    """A timer that cannot fire: never claimed again, with why (poison stays local)."""
    await conn.execute(
        "UPDATE fu_timers SET fired_at = $2, dead_reason = $3 WHERE id = $1",
        timer_id,
        at,
        reason[:1000],
    )


async def dead_letter_stage_change(conn: PgConnection, client_id: str, reason: str) -> None:
    """A client's stage change by time that cannot be made: its timer cleared, with why."""
    await conn.execute(
        "UPDATE fu_clients SET stage_changes_at = NULL, stage_change_dead_reason = $2 "
        "WHERE client_id = $1",
        client_id,
        reason[:1000],
    )


async def dead_timers(conn: PgConnection) -> list[tuple[uuid.UUID, str]]:
    rows = await conn.fetch(
        "SELECT id, dead_reason FROM fu_timers WHERE dead_reason IS NOT NULL ORDER BY id"
    )
    return [(r["id"], r["dead_reason"]) for r in rows]


# --- facts of the quality measures (D-12) ------------------------------------------------------

VISIT_COLUMNS = ("arrived_at", "category", "started_at", "ended_at", "closed_at", "outcome")
"""The columns of ``fu_visits`` a visit event sets (:func:`record_visit`'s ``columns``)."""


def visit_row(event: Decoded, rm_id: str | None, columns: dict[str, Any]) -> tuple[Any, ...]:
    """:func:`record_visit`'s row: the visit's key, branch and RM, then every
    :data:`VISIT_COLUMNS` (``None`` where ``columns`` does not set it)."""
    unknown = columns.keys() - set(VISIT_COLUMNS)
    if unknown:
        raise ValueError(f"not a visit column: {sorted(unknown)}")
    return (
        event.envelope.client_id,
        payload_as(event, VisitEvent).visit_id,
        event.envelope.branch_id,
        rm_id,
        *(columns.get(c) for c in VISIT_COLUMNS),
    )


async def record_visit(
    conn: PgConnection,
    typed: Decoded,
    rm_id: str | None,
    **columns: Any,
) -> None:
    """Upsert the visit of the event (``data.visit_id``) with ``columns`` set."""
    event = typed.envelope
    names = list(columns)
    values = [columns[n] for n in names]
    assignments = ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
    column_list = "".join(f", {n}" for n in names)
    placeholders = "".join(f", ${i}" for i in range(5, 5 + len(names)))
    await conn.execute(
        f"INSERT INTO fu_visits (client_id, visit_id, branch_id, rm_id{column_list}) "  # noqa: S608 - fixed identifiers, bound values
        f"VALUES ($1, $2, $3, $4{placeholders}) "
        f"ON CONFLICT (client_id, visit_id) DO UPDATE SET "
        f"branch_id = COALESCE(fu_visits.branch_id, EXCLUDED.branch_id), "
        f"rm_id = COALESCE(fu_visits.rm_id, EXCLUDED.rm_id)"
        + (f", {assignments}" if assignments else ""),
        event.client_id,
        payload_as(typed, VisitEvent).visit_id,
        event.branch_id,
        rm_id,
        *values,
    )


async def record_survey(
    conn: PgConnection,
    typed: Decoded,
    rm_id: str | None,
    visit_id: str | None,
    scores: dict[str, float],
) -> None:
    event = typed.envelope
    await conn.execute(
        """
        INSERT INTO fu_surveys (event_id, client_id, branch_id, rm_id, visit_id, answered_at,
                                attitude, professionalism, response_speed, risk_management,
                                convenience)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (event_id) DO NOTHING
        """,
        event.event_id,
        event.client_id,
        event.branch_id,
        rm_id,
        visit_id,
        event.occurred_at,
        scores["attitude"],
        scores["professionalism"],
        scores["response_speed"],
        scores["risk_management"],
        scores["convenience"],
    )


async def record_complaint_received(
    conn: PgConnection,
    typed: Decoded,
    rm_id: str | None,
    severity: str,
    topic: str | None,
) -> None:
    event = typed.envelope
    await conn.execute(
        """
        INSERT INTO fu_complaints (client_id, complaint_id, branch_id, rm_id, severity, topic,
                                   received_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (client_id, complaint_id) DO UPDATE
           SET severity = EXCLUDED.severity, topic = EXCLUDED.topic
        """,
        event.client_id,
        payload_as(typed, ComplaintEvent).complaint_id,
        event.branch_id,
        rm_id,
        severity,
        topic,
        event.occurred_at,
    )


COMPLAINT_STEP_COLUMNS = frozenset(
    {"owner_id", "acknowledged_at", "resolved_at", "confirmed_at", "satisfied", "closed_at"}
)


async def record_complaint_step(
    conn: PgConnection, typed: Decoded, status: str, **columns: Any
) -> None:
    names = list(columns)
    if not set(names) <= COMPLAINT_STEP_COLUMNS:
        raise ValueError(f"unknown complaint columns {sorted(set(names) - COMPLAINT_STEP_COLUMNS)}")
    assignments = "".join(f", {n} = ${i}" for i, n in enumerate(names, start=4))
    await conn.execute(
        f"UPDATE fu_complaints SET status = $3{assignments} "  # noqa: S608 - fixed identifiers, bound values
        "WHERE client_id = $1 AND complaint_id = $2",
        typed.envelope.client_id,
        payload_as(typed, ComplaintEvent).complaint_id,
        status,
        *[columns[n] for n in names],
    )
