"""What a batch reads ahead of its held clients, in one statement (#12, issue 12's per-batch
round trips): their facts (``fu_clients``), their open tasks (``fu_tasks``) and the journal's
latest positioned place of each (client, store) (``fu_client_events``, as
:func:`.client_journal.latest_places`), in one round trip where three statements were.

The three reads are three ``LEFT JOIN LATERAL`` branches of a three-row kind list: each output
row carries one kind's columns and NULLs in the others' (typed by their tables, which a
``UNION ALL`` would need a cast on every NULL).
:data:`CAUSED_BY` does the same for what a batch's events caused: the stored tasks and the
recorded task creations (two statements before); :data:`READ_AHEAD` has its two branches too,
so a batch reads what its events caused with the rest (#12).
The clients' locks are NOT taken by :data:`READ_AHEAD`: a statement reads from the snapshot
taken when it starts, so rows committed by a unit the lock waited for would be missed. Either
the caller takes the locks in a statement before it (ADR-0013, ADR-0014), or
:data:`MARK_APPLIED_LOCKING_READING` takes them and then reads through followup migration
021's VOLATILE function (018's before), whose query takes its own snapshot after the last lock
is granted (#12: a batch's records, locks and read ahead in one round trip).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from branchline_followup.adapters import client_journal
from branchline_followup.adapters.json_rows import rows_argument, values_argument
from branchline_followup.adapters.read_models import (
    FACT_COLUMNS,
    MARK_ALL_APPLIED_LOCKING,
    TASK_COLUMNS,
    facts_from_row,
    locking_rows,
    task_from_row,
)
from branchline_followup.domain import FollowupTask
from branchline_followup.domain.records import ClientFacts
from branchline_followup.domain.suitability import Rating
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.stored_documents import stored_envelope
from branchline_shared.events.upcasting import upcast
from branchline_shared.events.vocabulary import ProductRisk
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection

_FACTS = ("client_id", *FACT_COLUMNS)
_TASKS_AT = 1 + len(_FACTS)
_PLACES_AT = _TASKS_AT + len(TASK_COLUMNS)


def _texts(placeholder: str, cast: str = "text") -> str:
    """The array a JSON argument of single values holds (:func:`.json_rows.values_argument`,
    #12: one text where an array's elements were each checked in Python by asyncpg)."""
    return (
        f"ARRAY(SELECT v::{cast} "  # noqa: S608 - fixed identifiers, a placeholder
        f"FROM jsonb_array_elements_text({placeholder}::text::jsonb) AS a(v))"
    )


def _caused_branches(
    tasks: int, tasks_alias: str, creations: int, creations_alias: str, arguments: Sequence[str]
) -> str:
    """The two branches reading what events caused: the stored tasks (kind ``tasks``, its
    argument ``arguments[tasks - 1]``) and the recorded task creations (kind ``creations``;
    the type as a literal, so the planner uses the partial index of migration 011)."""
    return f"""LEFT JOIN LATERAL (
    SELECT {", ".join(TASK_COLUMNS)} FROM fu_tasks
    WHERE k.kind = {tasks} AND source_event_id = ANY({_texts(arguments[tasks - 1], "uuid")})
) {tasks_alias} ON true
LEFT JOIN LATERAL (
    SELECT envelope FROM es_events
    WHERE k.kind = {creations} AND type = 'followup.task_created'
        AND envelope ->> 'causation_id' = ANY({_texts(arguments[creations - 1])})
) {creations_alias} ON true"""  # noqa: S608 - fixed identifiers, placeholders


_CAUSED_AT = _PLACES_AT + 4
_CAUSED_CREATION_AT = _CAUSED_AT + len(TASK_COLUMNS)
RATING_COLUMNS = ("product_id", "event_id", "risk", "effective_at")
HOLDING_COLUMNS = ("client_id", "product_id", "product_risk")
_RATINGS_AT = _CAUSED_CREATION_AT + 1
_HOLDINGS_AT = _RATINGS_AT + len(RATING_COLUMNS)


def read_ahead_query(arguments: Sequence[str]) -> str:
    """The seven reads, their arguments (JSON texts) named by ``arguments`` in kind order:
    placeholders (:data:`READ_AHEAD`) or the parameters of followup migration 021's function,
    whose body is this query (tests/integration/followup/test_followup_read_ahead_function.py
    holds the two the same: a change here needs a migration replacing the function)."""
    facts, open_tasks, places = arguments[:3]
    ratings, holdings = arguments[5:7]
    return f"""
SELECT k.kind, f.*, t.*, p.*, ct.*, cc.envelope, r.*, h.*
FROM (VALUES (1), (2), (3), (4), (5), (6), (7)) AS k(kind)
LEFT JOIN LATERAL (
    SELECT {", ".join(_FACTS)} FROM fu_clients
    WHERE k.kind = 1 AND client_id = ANY({_texts(facts)})
) f ON true
LEFT JOIN LATERAL (
    SELECT {", ".join(TASK_COLUMNS)} FROM (
        SELECT {", ".join(TASK_COLUMNS)} FROM fu_tasks
        WHERE k.kind = 2 AND client_id = ANY({_texts(open_tasks)}) OFFSET 0
    ) AS of_client WHERE status = 'open'
) t ON true
LEFT JOIN LATERAL (
    {client_journal.latest_places_query(places)}
    WHERE k.kind = 3
) p ON true
{_caused_branches(4, "ct", 5, "cc", arguments)}
LEFT JOIN LATERAL (
    SELECT {", ".join(RATING_COLUMNS)} FROM fu_product_ratings
    WHERE k.kind = 6 AND product_id = ANY({_texts(ratings)})
) r ON true
LEFT JOIN LATERAL (
    SELECT {", ".join(HOLDING_COLUMNS)} FROM fu_holdings
    WHERE k.kind = 7 AND client_id = ANY({_texts(holdings)})
) h ON true
ORDER BY k.kind, t.opened_at, t.id
"""  # noqa: S608 - fixed identifiers, placeholders


READ_AHEAD = read_ahead_query(("$1", "$2", "$3", "$4", "$5", "$6", "$7"))
"""The seven reads: the three above, :data:`CAUSED_BY`'s two (#12: the look-up of what the
batch's events caused, a statement of its own before), the ratings of the products the batch's
events name (a statement of its own per batch with a sale or a rating before, Round 27) and
the holdings of the clients whose sales or reassessments the batch applies (a statement per
such event before, D-15; #12); ``k.kind = n`` keeps a branch's rows to
its own kind's row, whatever the plan (PostgreSQL 18 scans each branch once and materialises
it: checked with EXPLAIN ANALYZE, each index probed once). Tasks in the order of
``read_models.open_tasks_of``. The open tasks are the clients' tasks filtered on their status
outside a fence (``OFFSET 0``): with ``status = 'open'`` beside the client ids, a table without
statistics yet (a new database's first minute, before autovacuum's first ANALYZE) was read
through the partial index of every open task (followup migration 014), each batch (#12)."""


@dataclass
class CausedBy:
    tasks: list[FollowupTask] = field(default_factory=list)
    creations: list[RecordedEvent] = field(default_factory=list)


@dataclass
class ReadAhead:
    facts: dict[str, ClientFacts] = field(default_factory=dict)
    """Clients asked for whose row exists (the others left out)."""
    open_tasks: dict[str, list[FollowupTask]] = field(default_factory=dict)
    """Every client asked for, with its open tasks by (opened_at, id)."""
    places: dict[tuple[str, str], client_journal.Place] = field(default_factory=dict)
    """(client, store) pairs asked for with a positioned event kept (others left out)."""
    caused: CausedBy = field(default_factory=CausedBy)
    """What the events asked for caused (:func:`read_caused_by`'s)."""
    ratings: dict[str, dict[uuid.UUID, Rating]] = field(default_factory=dict)
    """Every product asked for, with its ratings by event id."""
    holdings: dict[str, dict[str, ProductRisk]] = field(default_factory=dict)
    """Every client asked for, with its holdings' risks by product id."""


@dataclass(frozen=True)
class Asked:
    """What a read ahead asks for (:func:`read_ahead`'s arguments)."""

    facts_of: Sequence[str] = ()
    open_tasks_of: Sequence[str] = ()
    places_of: Sequence[tuple[str, str]] = ()
    tasks_caused_by: Sequence[uuid.UUID] = ()
    creations_caused_by: Sequence[uuid.UUID] = ()
    ratings_of: Sequence[str] = ()
    holdings_of: Sequence[str] = ()

    def __bool__(self) -> bool:
        return bool(
            self.facts_of
            or self.open_tasks_of
            or self.places_of
            or self.tasks_caused_by
            or self.creations_caused_by
            or self.ratings_of
            or self.holdings_of
        )

    def arguments(self) -> tuple[str, str, str, str, str, str, str]:
        """The seven JSON texts, in :func:`read_ahead_query`'s order."""
        return (
            values_argument(self.facts_of),
            values_argument(self.open_tasks_of),
            rows_argument(self.places_of),
            values_argument(self.tasks_caused_by),
            values_argument(self.creations_caused_by),
            values_argument(self.ratings_of),
            values_argument(self.holdings_of),
        )


def _found(asked: Asked, rows: Iterable[Sequence[Any]]) -> ReadAhead:
    """What the rows of :func:`read_ahead_query` (each from its kind column on) hold."""
    found = ReadAhead(
        open_tasks={c: [] for c in asked.open_tasks_of},
        ratings={p: {} for p in asked.ratings_of},
        holdings={c: {} for c in asked.holdings_of},
    )
    for row in rows:
        kind = row[0]
        if kind == 1 and row[1] is not None:
            found.facts[row[1]] = facts_from_row(dict(zip(_FACTS, row[1:_TASKS_AT], strict=True)))
        elif kind == 2 and row[_TASKS_AT] is not None:
            task = task_from_row(dict(zip(TASK_COLUMNS, row[_TASKS_AT:_PLACES_AT], strict=True)))
            found.open_tasks[task.client_id].append(task)
        elif kind == 3 and row[_PLACES_AT] is not None:
            client_id, source, ms, position = row[_PLACES_AT:_CAUSED_AT]
            found.places[(client_id, source)] = (ms, position)
        elif kind == 4 and row[_CAUSED_AT] is not None:
            columns = row[_CAUSED_AT:_CAUSED_CREATION_AT]
            found.caused.tasks.append(task_from_row(dict(zip(TASK_COLUMNS, columns, strict=True))))
        elif kind == 5 and row[_CAUSED_CREATION_AT] is not None:
            # rows of followup's own event store, validated when they were written (#12)
            found.caused.creations.append(upcast(stored_envelope(row[_CAUSED_CREATION_AT])))
        elif kind == 6 and row[_RATINGS_AT] is not None:
            product_id, event_id, risk, effective_at = row[_RATINGS_AT:_HOLDINGS_AT]
            found.ratings[product_id][event_id] = Rating(event_id, ProductRisk(risk), effective_at)
        elif kind == 7 and row[_HOLDINGS_AT] is not None:
            client_id, product_id, product_risk = row[_HOLDINGS_AT:]
            found.holdings[client_id][product_id] = ProductRisk(product_risk)
    return found


async def read_ahead(conn: PgConnection, asked: Asked) -> ReadAhead:
    """The facts, open tasks and latest places of the clients ``asked``, and
    :func:`read_caused_by` of its events, in one statement (none when nothing is asked)."""
    if not asked:
        return _found(asked, ())
    return _found(asked, await conn.fetch(READ_AHEAD, *asked.arguments()))


MARK_APPLIED_LOCKING_READING = f"""{MARK_ALL_APPLIED_LOCKING}
SELECT CASE WHEN a.ordinality IS NULL OR a.ordinality = 1 THEN r.ids END AS ids, a.*
FROM recorded r
CROSS JOIN (SELECT count(*) AS locks FROM locked) l
LEFT JOIN LATERAL public.fu_read_ahead_held_v2(
    l.locks,
    $4::text IS NOT NULL AND {_texts("$4", "uuid")} <@ r.ids,
    $5, $6, $7, $8, $9, $10, $11
) WITH ORDINALITY AS a ON true
"""  # noqa: S608 - fixed identifiers, placeholders
"""The batch's records and its clients' locks (:data:`.read_models.MARK_ALL_APPLIED_LOCKING`),
then :func:`read_ahead` of what $5-$11 ask, through followup migration 021's function: called
with the locks' count (``l.locks``, an aggregate of every lock taken), it runs after the last
lock is granted, and, VOLATILE, its query reads from a snapshot taken then, which sees what a
unit holding one of the clients committed (ADR-0013; a read in this statement itself would
not). It reads only if every event $4 lists was recorded now (else its clients are not all
held, and the caller reads after this statement as before). The ids recorded now are on the
first row (each row one read-ahead row; one row of NULLs when nothing was read)."""


async def mark_applied_locking_reading(
    conn: PgConnection,
    events: Sequence[tuple[RecordedEvent, SourcePosition | None]],
    lockers: Sequence[str | None],
    clients: Sequence[str],
    lock_class: int,
    asked: Asked,
    reading_if_recorded: Sequence[uuid.UUID],
) -> tuple[set[uuid.UUID], ReadAhead | None]:
    """:func:`.read_models.mark_all_applied` and the locks of ``clients`` (each once, in this
    order) whose events (``lockers``: the client to lock per event, or None) were recorded now,
    and, if every one of ``reading_if_recorded`` was, :func:`read_ahead` of ``asked`` after
    the locks: one statement (#12). The ids recorded now, and what was read (None: nothing)."""
    reading = bool(asked)
    rows = await conn.fetch(
        MARK_APPLIED_LOCKING_READING,
        locking_rows(events, lockers),
        values_argument(clients),
        lock_class,
        values_argument(reading_if_recorded) if reading else None,
        *asked.arguments(),
    )
    ids = next(r[0] for r in rows if r[0] is not None)
    fresh = set(ids)
    if not (reading and all(e in fresh for e in reading_if_recorded)):
        return fresh, None
    return fresh, _found(asked, (r[1:] for r in rows if r[1] is not None))


_CAUSED_TASKS_AT = 1
_CREATION_AT = 1 + len(TASK_COLUMNS)

CAUSED_BY = f"""
SELECT k.kind, t.*, c.envelope
FROM (VALUES (1), (2)) AS k(kind)
{_caused_branches(1, "t", 2, "c", ("$1", "$2"))}
"""  # noqa: S608 - fixed identifiers, bound values
"""The stored tasks these events caused (``read_models.fetch_tasks_caused_by``) and their
recorded creations (the worker unit's ``task_creations_of``: the type as a literal, so the
planner uses the partial index of migration 011), as two branches as in :data:`READ_AHEAD`."""


async def read_caused_by(
    conn: PgConnection, tasks_of: Sequence[uuid.UUID], creations_of: Sequence[uuid.UUID]
) -> CausedBy:
    """The stored tasks that the events ``tasks_of`` caused and the recorded creations whose
    cause is one of ``creations_of``, in one statement."""
    found = CausedBy()
    rows = await conn.fetch(CAUSED_BY, values_argument(tasks_of), values_argument(creations_of))
    for row in rows:
        if row[0] == 1 and row[_CAUSED_TASKS_AT] is not None:
            columns = row[_CAUSED_TASKS_AT:_CREATION_AT]
            found.tasks.append(task_from_row(dict(zip(TASK_COLUMNS, columns, strict=True))))
        elif row[0] == 2 and row[_CREATION_AT] is not None:
            # rows of followup's own event store, validated when they were written (#12)
            found.creations.append(upcast(stored_envelope(row[_CREATION_AT])))
    return found
