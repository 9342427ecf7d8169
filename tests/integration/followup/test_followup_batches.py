"""The worker applies a fetched batch in one transaction, still effectively once (#12,
ADR-0003, ADR-0013): each event's id recorded as applied, a repeat within the batch changes
nothing, a poison event in the batch fails alone and is dead-lettered with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import orjson
import pytest
from asyncpg.connection import LoggedQuery

from branchline_followup.adapters.pg_schemas import LIVE_SCHEMA, with_search_path
from branchline_followup.adapters.unit_of_work import (
    PostgresFollowupUnitOfWork,
    PostgresUnitsOfWork,
)
from branchline_followup.application.batches import BatchOutcome, Delivered, apply_batch
from branchline_followup.application.ports import UnitsOfWork
from branchline_followup.application.projector import (
    Projection,
    apply_event,
    locks_client,
    project,
)
from branchline_followup.application.projector import (
    _record_quality_facts as record_quality_facts,
)
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_followup.domain import FollowupPolicy
from branchline_followup.entrypoints.worker import CONSUMER, handle_batch
from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.events.typed import Decoded, decode
from branchline_shared.kafka.consuming import RawMessage
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgConnection, PgPool, open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import (
    VOLATILE_COLUMNS,
    followup_db,
    generate_history,
    relayed,
    snapshot,
)
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PROJECTION = Projection(FollowupPolicy())


def an_event(event_type: str, client_id: str, data: dict[str, Any], version: int) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        occurred_at=AT + timedelta(minutes=version),
        recorded_at=AT + timedelta(minutes=version),
        source="intake",
        actor=Actor(id="staff-17", role="teller"),
        client_id=client_id,
        branch_id="BR-001",
        stream_id=f"client-{client_id}",
        stream_version=version,
        data=data,
    )


def registered(client_id: str) -> RecordedEvent:
    return an_event(
        "client.registered", client_id, {"client_type": "individual", "rm_id": "rm-7"}, 1
    )


def closed_visit(client_id: str, data: dict[str, Any] | None = None) -> RecordedEvent:
    return an_event("visit.closed", client_id, data or {"visit_id": "V-1", "outcome": "normal"}, 2)


def delivered(events: list[RecordedEvent]) -> list[Delivered]:
    return [Delivered(e, SourcePosition("intake", n)) for n, e in enumerate(events, start=1)]


class DeadLetterBox:
    """Stands in for the dead-letter topic: what was sent, with why."""

    def __init__(self) -> None:
        self.sent: list[tuple[RawMessage, str]] = []

    async def send(self, raw: RawMessage, reason: str) -> None:
        self.sent.append((raw, reason))


RECORDING = Projection(FollowupPolicy(), task_creations_topic="followup.events")
"""A projection that records the task creations it opens (their statements in the batch)."""


async def applied_in_turn(
    infra: Infra,
    tmp_path: Path,
    events: list[Delivered],
    projection: Projection = RECORDING,
    units: Callable[[PgPool], UnitsOfWork] = PostgresUnitsOfWork,
) -> BranchlineSettings:
    """A database of its own where ``events`` were applied one by one, each in a unit of its
    own from ``units``: what a batch of them must leave."""
    alone = make_settings(infra, tmp_path / "alone")
    await prepare_database(alone)
    pool = await open_read_model_pool(alone)
    try:
        for d in events:
            await apply_event(units(pool), decode(d.event), projection, d.position)
    finally:
        await pool.close()
    return alone


@contextlib.asynccontextmanager
async def one_connection(
    settings: BranchlineSettings,
) -> AsyncIterator[tuple[PgPool, PostgresUnitsOfWork]]:
    """Units of work on a pool of one connection: every statement of a batch is sent on it
    (its query logger sees them; ``pg_prepared_statements`` is its own)."""
    await prepare_database(settings)
    pool = await open_pool(
        with_search_path(settings.followup_database_url, LIVE_SCHEMA),
        min_size=1,
        max_size=1,
        session_state=False,
    )
    try:
        yield pool, PostgresUnitsOfWork(pool)
    finally:
        await pool.close()


async def statements_sent(
    pool: PgPool, units: PostgresUnitsOfWork, batch: list[Delivered]
) -> tuple[BatchOutcome, list[str]]:
    """``batch`` applied, and each statement it sent (whitespace folded), in order."""
    sent: list[str] = []

    def log(query: LoggedQuery) -> None:
        sent.append(" ".join(query.query.split()))

    async with pool.acquire() as conn:
        conn.add_query_logger(log)
    try:
        outcome = await apply_batch(units, batch, RECORDING, consumer=CONSUMER)
        await asyncio.sleep(0)  # the logger is called soon after each statement
    finally:
        async with pool.acquire() as conn:
            conn.remove_query_logger(log)
    return outcome, sent


@pytest.fixture
async def units(settings: BranchlineSettings) -> AsyncIterator[PostgresUnitsOfWork]:
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    yield PostgresUnitsOfWork(pool)
    await pool.close()


async def writing_transactions(db: asyncpg.Connection[Any], events: list[RecordedEvent]) -> int:
    """How many transactions recorded these events as applied (xmin: the writer's id)."""
    return int(
        await db.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM fu_read.fu_applied_events "
            "WHERE event_id = ANY($1::uuid[])",
            [e.event_id for e in events],
        )
    )


async def test_a_batch_is_applied_in_one_transaction(
    units: PostgresUnitsOfWork, db: asyncpg.Connection[Any]
) -> None:
    events = [registered("C-1"), registered("C-2"), closed_visit("C-1"), closed_visit("C-2")]
    outcome = await apply_batch(units, delivered(events), PROJECTION, consumer=CONSUMER)
    assert (outcome.applied, outcome.already_applied, outcome.failed) == (4, 0, [])
    assert not outcome.one_by_one
    assert await writing_transactions(db, events) == 1
    surveys = await db.fetch(
        "SELECT client_id FROM fu_read.fu_tasks WHERE kind = 'satisfaction_survey' "
        "ORDER BY client_id"
    )
    assert [r["client_id"] for r in surveys] == ["C-1", "C-2"]
    positions = await db.fetch(
        "SELECT source, global_position FROM fu_read.fu_applied_events "
        "WHERE event_id = ANY($1::uuid[]) ORDER BY global_position",
        [e.event_id for e in events],
    )
    assert [(r["source"], r["global_position"]) for r in positions] == [
        ("intake", n) for n in range(1, 5)
    ]


async def test_a_repeat_within_a_batch_and_a_redelivered_batch_change_nothing(
    units: PostgresUnitsOfWork, db: asyncpg.Connection[Any]
) -> None:
    visit = closed_visit("C-3")
    batch = delivered([registered("C-3"), visit, visit])
    first = await apply_batch(units, batch, PROJECTION, consumer=CONSUMER)
    assert (first.applied, first.already_applied) == (2, 1)
    tables = "fu_tasks", "fu_timers", "fu_visits", "fu_client_timeline", "fu_applied_events"

    async def counts() -> list[int]:
        return [int(await db.fetchval(f"SELECT count(*) FROM fu_read.{t}")) for t in tables]

    before = await counts()
    again = await apply_batch(units, batch, PROJECTION, consumer=CONSUMER)
    assert (again.applied, again.already_applied, again.failed) == (0, 3, [])
    assert await counts() == before
    surveys = await db.fetchval(
        "SELECT count(*) FROM fu_read.fu_tasks WHERE kind = 'satisfaction_survey'"
    )
    assert surveys == 1


async def test_a_poison_event_fails_alone_and_is_dead_lettered_with_its_reason(
    units: PostgresUnitsOfWork, db: asyncpg.Connection[Any]
) -> None:
    poison = closed_visit("C-4", {"outcome": "normal"})  # no visit id: the rules refuse it
    events = [registered("C-4"), poison, registered("C-5"), closed_visit("C-5")]
    raws = relayed(events)
    raws.append(RawMessage("intake.events", 0, 4, b"C-6", b"{not json", []))
    dead = DeadLetterBox()
    await handle_batch(raws, units, dead, PROJECTION)  # type: ignore[arg-type]
    assert [raw.offset for raw, _ in dead.sent] == [4, 1]  # undecodable first, then the poison
    assert dead.sent[1][1].startswith("projection failed: ")
    assert "visit_id" in dead.sent[1][1]
    applied = await db.fetch(
        "SELECT event_id FROM fu_read.fu_applied_events WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )
    assert {r["event_id"] for r in applied} == {e.event_id for e in events if e is not poison}
    survey_of = await db.fetch(
        "SELECT client_id FROM fu_read.fu_tasks WHERE kind = 'satisfaction_survey'"
    )
    assert [r["client_id"] for r in survey_of] == ["C-5"]
    visits = await db.fetch("SELECT client_id, visit_id, outcome FROM fu_read.fu_visits")
    assert [tuple(r) for r in visits] == [("C-5", "V-1", "normal")]  # the poison's not kept


async def test_a_batch_changes_what_its_events_applied_one_by_one_change(
    infra: Infra, tmp_path: Path, units: PostgresUnitsOfWork, db: asyncpg.Connection[Any]
) -> None:
    """#12: the batch records its events as applied in one statement and the task creations
    they decide together at its end; the read models, followup's event store and the applied
    record are the same as when each event is applied in its own transaction (rebuild ==
    incremental relies on it)."""
    history = generate_history(12, end=AT, span=timedelta(days=400), seed=12)
    events = sorted(history.events, key=lambda e: e.recorded_at)
    batch = delivered(events)
    for start in range(0, len(batch), 40):
        outcome = await apply_batch(units, batch[start : start + 40], RECORDING, consumer=CONSUMER)
        assert not outcome.one_by_one
        assert not outcome.failed
    alone = await applied_in_turn(infra, tmp_path, batch)
    async with followup_db(alone) as other:  # read as ``db`` reads (no codecs)
        expected = await comparable(other)
    got = await comparable(db)
    assert got["fu_tasks"], "the history makes tasks due"
    assert got["es_events"], "and records their creations"
    assert got == expected


async def test_a_batch_writes_its_clients_rows_as_events_applied_alone_write_them(
    infra: Infra, tmp_path: Path, units: PostgresUnitsOfWork, db: asyncpg.Connection[Any]
) -> None:
    """#12: a batch writes its clients' facts and journal rows at its end; what reads or
    changes them on the way (an account closure's reason, a client's events arriving out of
    order within the batch, one without a position) finds them as applied one by one."""
    closure = an_event("client.account_closed", "C-7", {"reason": "relocation"}, 3)
    early, later = (
        closed_visit("C-8"),
        an_event("visit.arrived", "C-8", {"visit_id": "V-2", "ticket": "A018"}, 3),
    )
    batch = [
        Delivered(registered("C-7"), SourcePosition("intake", 1)),
        Delivered(closed_visit("C-7"), SourcePosition("intake", 2)),
        Delivered(closure, SourcePosition("intake", 3)),
        Delivered(registered("C-8"), SourcePosition("intake", 4)),
        Delivered(later, SourcePosition("intake", 6)),
        Delivered(early, SourcePosition("intake", 5)),  # late: after a later one of C-8
        Delivered(registered("C-9"), None),  # no position: never found late
    ]
    outcome = await apply_batch(units, batch, PROJECTION, consumer=CONSUMER)
    assert (outcome.applied, outcome.failed, outcome.one_by_one) == (7, [], False)
    alone = await applied_in_turn(infra, tmp_path, batch, projection=PROJECTION)
    async with followup_db(alone) as other:
        expected = await comparable(other)
    got = await comparable(db)
    assert got == expected
    reason = await db.fetchval(
        "SELECT account_closure_reason FROM fu_read.fu_clients WHERE client_id = 'C-7'"
    )
    assert reason == "relocation"
    kept = await db.fetchval("SELECT count(*) FROM fu_read.fu_client_events")
    assert kept == len(batch)


async def test_a_one_event_batch_reads_its_client_ahead_in_its_applied_records_statement(
    settings: BranchlineSettings,
) -> None:
    """#12: what a one-event batch sends, statement by statement (each a round trip; at
    light load every batch is one event, so they are its fixed cost): the applied record takes
    the client's lock and, after it, reads ahead the client's facts, open tasks and journal
    place and the tasks and creations its event caused, in ONE statement (through followup
    migration 018's function, whose query takes its snapshot after the lock; the read ahead
    was the statement after it before), so a registration that makes a task due sends at most
    4 (19, 16, 9, 7, 6, then 5 before): BEGIN with the swap lock (2 before), the applied
    record with the client's lock and the read ahead (3, then 2 before), the collected writes
    with the creation's stream created and locked, the creation and its outbox row written
    and its applied record with the position written (the creation's stream and event were
    a statement of their own before, 3 then 2 before that; the collected writes 5), COMMIT."""
    async with one_connection(settings) as (pool, units):
        first = delivered([registered("C-20")])
        warm = await apply_batch(units, first, RECORDING, consumer=CONSUMER)
        assert warm.applied == 1  # the statements prepared, the types known
        one = [Delivered(registered("C-21"), SourcePosition("intake", 9))]
        outcome, sent = await statements_sent(pool, units, one)
        async with pool.acquire() as conn:  # the creation stored, queued, applied at its place
            creations = await conn.fetch(
                "SELECT e.stream_version, a.source, a.global_position = e.global_position AS at, "
                "o.topic FROM es_events e JOIN fu_applied_events a USING (event_id) "
                "JOIN es_outbox o USING (event_id) WHERE e.client_id = 'C-21' "
                "AND e.type = 'followup.task_created'"
            )
    assert [tuple(r) for r in creations] == [(1, "followup", True, "followup.events")]
    assert (outcome.applied, outcome.failed, outcome.one_by_one) == (1, [], False)
    reads = [
        q
        for q in sent
        if "fu_read_ahead_held_v2(" in q
        or (
            q.startswith("SELECT")
            and any(r in q for r in ("fu_clients", "fu_client_events", "'open'", "task_created"))
        )
    ]
    assert len(reads) == 1, "\n".join(sent)
    (marking,) = reads
    assert sent.index(marking) == 1  # right after BEGIN
    assert "INSERT INTO fu_applied_events" in marking  # the applied record,
    assert "pg_advisory_xact_lock(" in marking  # the client's lock,
    assert "public.fu_read_ahead_held_v2( l.locks," in marking  # the read ahead after the lock
    assert [q for q in sent if "pg_advisory_xact_lock(" in q] == [marking]
    collected = [q for q in sent if q.startswith("WITH w0 AS (INSERT INTO fu_clients ")]
    assert len(collected) == 1, "\n".join(sent)
    assert "INSERT INTO fu_applied_events " in collected[0]  # the creation's record
    streams = [q for q in sent if "INSERT INTO es_streams" in q]
    assert streams == collected, "\n".join(sent)  # the creation's stream with the writes,
    assert "INSERT INTO es_events" in streams[0]  # the creation written with its lock,
    assert "INSERT INTO es_outbox" in streams[0]  # its outbox row
    assert not [q for q in sent if q.startswith("SELECT k.kind, t.*, c.envelope")]
    assert sent[0].startswith("BEGIN; SELECT pg_advisory_xact_lock_shared("), sent[0]
    assert len(sent) <= 4, "\n".join(sent)


class _OneConnection:
    """A pool of one connection that is never released (a log listener on a pooled
    connection is refused when it is released)."""

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self._conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        yield self._conn


async def test_a_batch_runs_its_statements_on_generic_plans(settings: BranchlineSettings) -> None:
    """#12: a unit runs its prepared statements on their generic plans from the first run.
    The batch's read ahead was planned again at every run (its custom plan, for one-element
    arrays, always looked cheaper), and planning it cost more PostgreSQL CPU than running it;
    the setting is the transaction's own, so the next transaction on the connection plans as
    configured. The read ahead now runs inside followup migration 018's function, called by
    the applied records' statement: PL/pgSQL plans its query by the same setting, so it too
    runs its generic plan (auto_explain's verbose plan: the function's arguments as
    parameters, ``$n``, where a custom plan has the values)."""
    await prepare_database(settings)
    notices: list[str] = []

    def notice(_: object, message: Any) -> None:
        notices.append(message.message)

    conn = await asyncpg.connect(with_search_path(settings.followup_database_url, LIVE_SCHEMA))
    try:
        for type_name in ("json", "jsonb"):  # as the pools' connections
            await conn.set_type_codec(
                type_name, encoder=orjson_text, decoder=orjson.loads, schema="pg_catalog"
            )
        await conn.execute("LOAD 'auto_explain'")
        await conn.execute(
            "SET auto_explain.log_min_duration = 0; "
            "SET auto_explain.log_nested_statements = on; "
            "SET auto_explain.log_verbose = on; SET auto_explain.log_level = notice"
        )
        conn.add_log_listener(notice)
        units = PostgresUnitsOfWork(cast(Any, _OneConnection(conn)))
        for n in range(3):
            one = [Delivered(registered(f"C-3{n}"), SourcePosition("intake", n + 1))]
            outcome = await apply_batch(units, one, RECORDING, consumer=CONSUMER)
            assert outcome.applied == 1
        await conn.execute("RESET auto_explain.log_min_duration")
        await asyncio.sleep(0)  # the listener is called soon after each notice
        conn.remove_log_listener(notice)
        plans = await conn.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%public.fu_read_ahead_held_v2(%' "
            "AND statement NOT LIKE '%pg_prepared_statements%'"  # not this one
        )
        mode = await conn.fetchval("SELECT current_setting('plan_cache_mode')")
    finally:
        await conn.close()
    assert [(p["generic_plans"], p["custom_plans"]) for p in plans] == [(3, 0)]
    read_aheads = [
        n for n in notices if "FROM (VALUES (1), (2), (3), (4), (5), (6), (7)) AS k(kind)" in n
    ]
    assert len(read_aheads) == 3, notices
    for plan in read_aheads:
        assert "jsonb_array_elements_text(($" in plan, plan  # a parameter: generic
        assert "jsonb_array_elements_text('[" not in plan, plan  # a value: custom
    assert mode == "auto"  # outside a unit: as configured


def orjson_text(value: Any) -> str:
    return orjson.dumps(value).decode()


async def comparable(db: asyncpg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """The read models and followup's events, without what differs by when a creation was
    stored (its global position, recorded_at): each applied creation must carry its store's
    position."""
    tables = await snapshot(db)
    unplaced = await db.fetchval(
        "SELECT count(*) FROM fu_read.fu_applied_events a "
        "LEFT JOIN public.es_events e USING (event_id) "
        "WHERE a.source = 'followup' AND a.global_position IS DISTINCT FROM e.global_position"
    )
    assert unplaced == 0
    columns = [
        r["column_name"]
        for r in await db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'fu_read' "
            "AND table_name = 'fu_applied_events' ORDER BY ordinal_position"
        )
        if r["column_name"] not in VOLATILE_COLUMNS
    ]
    at = columns.index("global_position")
    tables["fu_applied_events"] = sorted(
        (row[:at] + row[at + 1 :] for row in tables["fu_applied_events"]), key=repr
    )
    rows = await db.fetch(
        "SELECT e.event_id, e.stream_id, e.stream_version, e.type, e.client_id, e.occurred_at, "
        "o.topic FROM public.es_events e JOIN public.es_outbox o USING (event_id)"
    )
    tables["es_events"] = sorted((tuple(r) for r in rows), key=repr)
    return tables


async def test_a_one_event_consent_batch_writes_its_client_page_with_the_collected_writes(
    settings: BranchlineSettings,
) -> None:
    """#12: a consent's rows of the client page go into the collected writes' statement (an
    ``executemany`` of their own before), so a one-event consent batch sends at most 5
    statements (7, then 6 before): BEGIN with the swap lock, the applied record with the
    client's lock, the read ahead, the collected writes, COMMIT."""

    def consent(kind: str, version: int, position: int) -> list[Delivered]:
        event = an_event(f"client.consent_{kind}", "C-24", {"purposes": ["marketing"]}, version)
        return [Delivered(event, SourcePosition("intake", position))]

    async with one_connection(settings) as (pool, units):
        first = [Delivered(registered("C-24"), SourcePosition("intake", 10))]
        for batch in (first, consent("granted", 2, 11)):  # the statements prepared
            assert (await apply_batch(units, batch, RECORDING, consumer=CONSUMER)).applied == 1
        outcome, sent = await statements_sent(pool, units, consent("withdrawn", 3, 12))
        async with pool.acquire() as conn:
            granted = await conn.fetchval(
                "SELECT granted FROM fu_client_consents WHERE client_id = 'C-24'"
            )
    assert (outcome.applied, outcome.failed, outcome.one_by_one) == (1, [], False)
    assert granted is False
    collected = [q for q in sent if q.startswith("WITH w0 AS (")]
    assert len(collected) == 1, "\n".join(sent)
    assert "INSERT INTO fu_client_consents " in collected[0]
    assert not [q for q in sent if q.startswith("INSERT INTO fu_client_consents")]
    assert len(sent) <= 5, "\n".join(sent)


def a_visit(client_id: str, visit_id: str, first_version: int) -> list[RecordedEvent]:
    """A visit's arrival, confirmed need, handling and close (D-01), each setting its facts."""
    start = AT + timedelta(minutes=first_version)
    data: list[tuple[str, dict[str, Any]]] = [
        ("visit.arrived", {"visit_id": visit_id, "ticket": "A018"}),
        ("visit.needs_confirmed", {"visit_id": visit_id, "category": "deposit"}),
        (
            "visit.business_handled",
            {
                "visit_id": visit_id,
                "counter": "W3",
                "started_at": (start + timedelta(minutes=1)).isoformat(),
                "ended_at": (start + timedelta(minutes=2)).isoformat(),
            },
        ),
        ("visit.closed", {"visit_id": visit_id, "outcome": "normal"}),
    ]
    return [
        an_event(event_type, client_id, payload, first_version + i)
        for i, (event_type, payload) in enumerate(data)
    ]


async def test_a_batchs_visit_facts_go_into_the_collected_writes_once_per_visit(
    infra: Infra, tmp_path: Path, settings: BranchlineSettings
) -> None:
    """#12: a visit event's upsert of ``fu_visits`` was a statement of its own in its batch;
    now a batch's visit facts are a part of the collected writes' statement, one row per visit
    (a batch may hold a visit's arrival, need, handling and close: one statement cannot change a
    row twice), and the table ends as when each event is applied alone. A one-event close sends
    no statement of its own for its visit."""
    batch = delivered([registered("C-30"), *a_visit("C-30", "V-3", 2), *a_visit("C-30", "V-4", 6)])
    close = an_event(
        "visit.closed", "C-31", {"visit_id": "V-5", "outcome": "left_early", "reason": "queue"}, 3
    )
    later = [
        Delivered(e, SourcePosition("intake", p))
        for p, e in enumerate(
            [registered("C-31"), an_event("visit.arrived", "C-31", {"visit_id": "V-5"}, 2), close],
            start=len(batch) + 1,
        )
    ]
    async with one_connection(settings) as (pool, units):
        outcome, sent = await statements_sent(pool, units, batch)
        assert (outcome.applied, outcome.failed, outcome.one_by_one) == (len(batch), [], False)
        for one in later[:2]:  # the statements prepared
            await apply_batch(units, [one], RECORDING, consumer=CONSUMER)
        single, sent_one = await statements_sent(pool, units, later[2:])
        assert (single.applied, single.failed) == (1, [])
    for statements in (sent, sent_one):
        assert not [q for q in statements if q.startswith("INSERT INTO fu_visits")], statements
        (collected,) = [q for q in statements if q.startswith("WITH w0 AS (")]
        assert "INSERT INTO fu_visits AS v " in collected
    alone = await applied_in_turn(infra, tmp_path, [*batch, *later])
    async with followup_db(alone) as other, followup_db(settings) as db:
        expected = await comparable(other)
        got = await comparable(db)
    assert len(got["fu_visits"]) == 3
    assert got == expected


SERVICE_LOOP_TABLES = (
    "fu_surveys",
    "fu_complaints",
    "fu_corrective_actions",
    "fu_renegotiations",
    "fu_business_events",
)
SERVICE_LOOP_WRITES = tuple(
    f"{verb} {table}"
    for table in SERVICE_LOOP_TABLES
    for verb in ("INSERT INTO", "UPDATE")
    if not (verb == "UPDATE" and table in ("fu_surveys", "fu_renegotiations"))
)
"""How each per-event statement of these tables began (#12: before the collected writes)."""


def a_complaint_loop(client_id: str, complaint_id: str, first_version: int) -> list[RecordedEvent]:
    """A complaint through its closed loop (D-07, D-17) with a corrective action, a survey, a
    sale and a renegotiated promise: each a service-loop write."""
    complaint = {"complaint_id": complaint_id}
    due = (AT + timedelta(days=9)).isoformat()
    data: list[tuple[str, dict[str, Any]]] = [
        (
            "complaint.received",
            {**complaint, "severity": "important", "summary": "s", "problem": "waiting_time"},
        ),
        ("complaint.acknowledged", {**complaint, "owner_id": "rm-7"}),
        ("complaint.progress_reported", {**complaint, "note": "n", "complex": True}),
        ("complaint.resolved", {**complaint, "resolution": "s", "root_cause": "process"}),
        ("complaint.confirmed_by_client", {**complaint, "satisfied": True}),
        ("complaint.closed", complaint),
        (
            "complaint.corrective_action_planned",
            {
                **complaint,
                "action_id": "CA-1",
                "root_cause": "process",
                "action_kind": "process_change",
                "owner_id": "sup-1",
                "due_at": due,
            },
        ),
        ("complaint.corrective_action_completed", {**complaint, "action_id": "CA-1"}),
        (
            "complaint.promise_renegotiated",
            {
                **complaint,
                "promised_by": due,
                "reason": "awaiting_third_party",
                "alternative": "s",
                "client_told": True,
            },
        ),
        ("feedback.survey_answered", {"visit_id": "V-9", "scores": dict.fromkeys(SCORES, 80)}),
        ("product.sold", {"product_id": "P-1", "amount": "250000.50"}),
    ]
    return [
        an_event(event_type, client_id, payload, first_version + i)
        for i, (event_type, payload) in enumerate(data)
    ]


SCORES = ("attitude", "professionalism", "response_speed", "risk_management", "convenience")


class InTurnUnits:
    """Units that write each read-model write as a statement of its own, in the order made
    (no collected writes: :class:`PostgresFollowupUnitOfWork` without ``collect``), as the
    worker did before #12 collected them: what the collected writes must leave."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresFollowupUnitOfWork]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresFollowupUnitOfWork(conn)


async def test_a_batchs_service_loop_facts_go_into_the_collected_writes(
    infra: Infra, tmp_path: Path, settings: BranchlineSettings
) -> None:
    """#12: surveys, complaints and their steps, corrective actions, renegotiations and
    business events were each a statement of their own per event in the worker's batch (9 of
    the 11 events below, 13 statements); now they are parts of the collected writes' one
    statement, one row per complaint and action, and the tables end as when each event is
    written in turn by those statements."""
    batch = delivered([registered("C-40"), *a_complaint_loop("C-40", "K-1", 2)])
    async with one_connection(settings) as (pool, units):
        outcome, sent = await statements_sent(pool, units, batch)
    assert (outcome.applied, outcome.failed, outcome.one_by_one) == (len(batch), [], False)
    assert not [q for q in sent if q.startswith(SERVICE_LOOP_WRITES)], "\n".join(sent)
    (collected,) = [q for q in sent if q.startswith("WITH w0 AS (")]
    for table in SERVICE_LOOP_TABLES:
        assert f" {table} " in collected, table
    alone = await applied_in_turn(infra, tmp_path, batch, units=InTurnUnits)
    async with followup_db(alone) as other, followup_db(settings) as db:
        expected = await snapshot(other)
        got = await snapshot(db)
    for table in SERVICE_LOOP_TABLES:
        assert got[table], table
        assert got[table] == expected[table], table
    (complaint,) = got["fu_complaints"]
    for value in ("closed", "waiting_time", "process", "rm-7"):  # steps and facts, one row
        assert value in complaint, complaint


def random_service_loop(
    rng: random.Random, client_id: str, first: int, n: int
) -> list[RecordedEvent]:
    """``n`` service-loop events of two complaints and an action of each in any order: steps
    before a receipt, receipts again, completions before a plan, plans again, surveys twice."""
    events: list[RecordedEvent] = []
    for version in range(first, first + n):
        complaint = {"complaint_id": rng.choice(["K-1", "K-2"])}
        action = {**complaint, "action_id": "CA-1"}
        kind, data = rng.choice(
            [
                (
                    "complaint.received",
                    {
                        **complaint,
                        "severity": rng.choice(["general", "urgent"]),
                        "summary": "s",
                        "topic": rng.choice([None, "fees"]),
                        "complex": rng.random() < 0.5,
                        "problem": rng.choice([None, "waiting_time"]),
                        "product_id": rng.choice([None, "P-1"]),
                    },
                ),
                ("complaint.acknowledged", {**complaint, "owner_id": rng.choice(["a", "b"])}),
                (
                    "complaint.progress_reported",
                    {**complaint, "note": "n", "complex": rng.random() < 0.5},
                ),
                (
                    "complaint.resolved",
                    {**complaint, "resolution": "s", "root_cause": rng.choice([None, "staff"])},
                ),
                (
                    "complaint.confirmed_by_client",
                    {**complaint, "satisfied": rng.random() < 0.5},
                ),
                ("complaint.closed", complaint),
                (
                    "complaint.corrective_action_planned",
                    {
                        **action,
                        "root_cause": rng.choice(["process", "system"]),
                        "action_kind": "training",
                        "owner_id": rng.choice(["sup-1", "sup-2"]),
                        "due_at": (AT + timedelta(days=rng.randint(1, 9))).isoformat(),
                    },
                ),
                ("complaint.corrective_action_completed", action),
                ("feedback.survey_answered", {"scores": dict.fromkeys(SCORES, rng.randint(1, 9))}),
            ]
        )
        events.append(an_event(kind, client_id, data, version))
        if kind == "feedback.survey_answered" and rng.random() < 0.5:
            events.append(events[-1])  # the same event again: its row once
    return events


async def service_loop_rows(
    conn: asyncpg.Connection[Any], before: list[Decoded], batch: list[Decoded], *, collect: bool
) -> dict[str, list[tuple[Any, ...]]]:
    """The service-loop tables after ``before`` and ``batch`` are recorded in one transaction,
    rolled back: ``before`` in turn, ``batch`` in turn or collected."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        earlier = PostgresFollowupUnitOfWork(conn)
        for event in before:
            await record_quality_facts(earlier, event, "rm-1")
        unit = PostgresFollowupUnitOfWork(conn, collect=collect)
        for i, event in enumerate(batch):
            await record_quality_facts(unit, event, None if i % 3 else "rm-2")
        await unit.write_collected()
        tables = {
            t: sorted((tuple(r) for r in await conn.fetch(f"SELECT * FROM {t}")), key=repr)
            for t in SERVICE_LOOP_TABLES
        }
    finally:
        await transaction.rollback()  # the next scenario starts from nothing
    return tables


async def test_the_collected_service_loop_rows_leave_what_the_writes_in_turn_leave(
    settings: BranchlineSettings,
) -> None:
    """#12: a statement cannot change a row twice, so the collected writes reduce a batch's
    writes of each complaint and corrective action to one row; over random orders (a step
    before its complaint's receipt, a receipt again, a completion before its plan, a plan
    again, a survey twice; with and without rows already there) the tables end as when each
    write is its own statement, in turn."""
    await prepare_database(settings)
    rng = random.Random(26)
    async with followup_db(settings) as conn:
        await conn.execute(f"SET search_path TO {LIVE_SCHEMA}, public")
        for scenario in range(150):
            before = [decode(e) for e in random_service_loop(rng, "C-50", 1, rng.choice((0, 0, 4)))]
            batch = [decode(e) for e in random_service_loop(rng, "C-50", 10, rng.randint(1, 16))]
            expected = await service_loop_rows(conn, before, batch, collect=False)
            got = await service_loop_rows(conn, before, batch, collect=True)
            assert got == expected, (scenario, [e.envelope.type for e in batch])


CLOSURE_UPDATE_SENT = "UPDATE fu_clients SET account_closure_reason"
RATINGS_READ = "FROM fu_product_ratings WHERE"
HOLDINGS_READ = "FROM fu_holdings WHERE client_id = $1"
PRODUCT_LOCKS = "hashtext(p)"
"""The products' locks' statement (``pg_schemas.lock_products``), before the read ahead."""


def a_shelf_event(
    event_type: str, product_id: str, data: dict[str, Any], version: int
) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        occurred_at=AT + timedelta(minutes=version),
        recorded_at=AT + timedelta(minutes=version),
        source="intake",
        actor=Actor(id="admin-1", role="admin"),
        product_id=product_id,
        stream_id=f"product-{product_id}",
        stream_version=version,
        data=data,
    )


def approved(product_id: str, risk: str, version: int) -> RecordedEvent:
    data = {
        "name": "Income Fund",
        "category": "fund",
        "risk": risk,
        "eligible_client_types": ["individual"],
    }
    return a_shelf_event("product.approved", product_id, data, version)


def rerated(product_id: str, risk: str, version: int) -> RecordedEvent:
    at = (AT + timedelta(minutes=version)).isoformat()
    data = {"risk": risk, "effective_at": at, "reason": "equity share raised"}
    return a_shelf_event("product.rerated", product_id, data, version)


def closed(client_id: str, reason: str, version: int) -> RecordedEvent:
    return an_event("client.account_closed", client_id, {"reason": reason}, version)


def reopened(client_id: str, version: int) -> RecordedEvent:
    return an_event("client.account_reopened", client_id, {"reason": "client_request"}, version)


def sold(client_id: str, product_id: str, version: int) -> RecordedEvent:
    data = {"product_id": product_id, "amount": "1000"}
    return an_event("product.sold", client_id, data, version)


async def test_a_batchs_closures_go_into_its_collected_writes_and_its_ratings_are_read_once(
    infra: Infra, tmp_path: Path, settings: BranchlineSettings
) -> None:
    """#12: a closure's or reopening's ``UPDATE`` of its client's row was a statement of its
    own in the worker's batch (after the row's write), and each sale and rating read the
    product's ratings by a statement of its own; now the reason goes into the collected
    writes with the client's row (a client never registered: nothing, as the ``UPDATE`` found
    no row) and the batch reads its products' ratings once, and the read models end as when
    each event is applied alone, each write its own statement in turn (the re-rating after
    the first sale still makes that holder's D-15 review due)."""
    batch = delivered(
        [
            approved("P-7", "R2", 1),
            registered("C-70"),
            an_event("client.risk_assessed", "C-70", {"level": "C2"}, 2),
            sold("C-70", "P-7", 3),
            closed("C-70", "relocation", 4),
            reopened("C-70", 5),
            closed("C-70", "dissatisfaction", 6),
            registered("C-71"),
            sold("C-71", "P-7", 2),
            closed("C-71", "dormant", 3),
            rerated("P-7", "R4", 20),
            reopened("C-71", 4),
            sold("C-71", "P-7", 5),
            closed("C-72", "deceased", 1),
        ]
    )
    async with one_connection(settings) as (pool, units):
        outcome, sent = await statements_sent(pool, units, batch)
    assert (outcome.applied, outcome.failed, outcome.one_by_one) == (len(batch), [], False)
    assert not [q for q in sent if q.startswith(CLOSURE_UPDATE_SENT)], "\n".join(sent)
    # Round 28: the ratings and the sales' and reassessments' holdings in the read ahead
    # (followup migration 021's function, after the products' and clients' locks), D-15
    assert not [q for q in sent if RATINGS_READ in q], "\n".join(sent)
    assert not [q for q in sent if HOLDINGS_READ in q], "\n".join(sent)
    (marking,) = [q for q in sent if "fu_read_ahead_held_v2(" in q]
    assert sent.index(next(q for q in sent if PRODUCT_LOCKS in q)) <= sent.index(marking)
    (collected,) = [q for q in sent if q.startswith("WITH w0 AS (")]
    assert "account_closure_reason" in collected
    alone = await applied_in_turn(infra, tmp_path, batch, units=InTurnUnits)
    async with followup_db(alone) as other, followup_db(settings) as db:
        expected = await comparable(other)
        got = await comparable(db)
        reasons = dict(
            await db.fetch("SELECT client_id, account_closure_reason FROM fu_read.fu_clients")
        )
        reviews = await db.fetchval(
            "SELECT count(*) FROM fu_read.fu_tasks WHERE kind = 'suitability_review'"
        )
    assert reasons == {"C-70": "dissatisfaction", "C-71": None}
    assert reviews == 1  # C-70 (C2) bought P-7 before its re-rating to R4
    assert {r[0]: r[1] for r in got["fu_holdings"]} == {"C-70": "P-7", "C-71": "P-7"}
    assert got == expected


def random_closures(
    rng: random.Random, clients: list[str], first: int, n: int
) -> list[RecordedEvent]:
    """``n`` events of these clients in any order: registrations, closures with a reason,
    reopenings, an event changing the facts, sales of two products and the products'
    ratings, service-loop events among them."""
    events: list[RecordedEvent] = []
    for version in range(first, first + n):
        client_id = rng.choice(clients)
        product_id = rng.choice(["P-1", "P-2"])
        pick = rng.random()
        if pick < 0.12:
            event = registered(client_id).model_copy(
                update={
                    "event_id": uuid.uuid4(),
                    "stream_version": version,
                    "occurred_at": AT + timedelta(minutes=version),
                    "recorded_at": AT + timedelta(minutes=version),
                }
            )
        elif pick < 0.32:
            reason = rng.choice(["relocation", "dormant", "deceased"])
            event = closed(client_id, reason, version)
        elif pick < 0.47:
            event = reopened(client_id, version)
        elif pick < 0.55:
            level = f"C{rng.randint(1, 5)}"
            event = an_event("client.risk_assessed", client_id, {"level": level}, version)
        elif pick < 0.65:
            event = sold(client_id, product_id, version)
        elif pick < 0.72:
            risk = f"R{rng.randint(1, 5)}"
            make = rng.choice([approved, rerated])
            event = make(product_id, risk, version)
        else:
            (event,) = random_service_loop(rng, client_id, version, 1)[:1]
        events.append(event)
    return events


async def applied_rows(
    conn: PgConnection,
    before: list[RecordedEvent],
    batch: list[RecordedEvent],
    *,
    collect: bool,
    read_ahead: bool = False,
    batch_begins: Callable[[], None] | None = None,
) -> dict[str, list[tuple[Any, ...]]]:
    """Every read model after ``before`` and ``batch`` are applied by the projector in one
    transaction, rolled back: ``before`` in a unit writing in turn, ``batch`` in one unit
    writing in turn or collecting (its positions as given: an event after a later one of its
    store re-projects its client), ``read_ahead``: its clients held and read ahead first, as
    the worker's batch does (their facts, tasks, places, holdings and the products' ratings);
    ``batch_begins`` called once ``before`` is applied."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        earlier = PostgresFollowupUnitOfWork(conn)
        for n, event in enumerate(before, start=1):
            await project(earlier, decode(event), PROJECTION, SourcePosition("intake", n))
        if batch_begins is not None:
            await asyncio.sleep(0)  # a query logger is called soon after each statement
            batch_begins()
        unit = PostgresFollowupUnitOfWork(conn, collect=collect)
        unit.holdings.expect([(e, None) for e in batch])
        if read_ahead:
            await unit.hold_clients_of(
                [
                    (e, SourcePosition("intake", 1000 + e.stream_version))
                    for e in batch
                    if locks_client(e)
                ]
            )
        for event in batch:
            position = SourcePosition("intake", 1000 + event.stream_version)
            await project(unit, decode(event), PROJECTION, position)
        await unit.write_collected()
        tables = await snapshot(conn, LIVE_SCHEMA)
    finally:
        await transaction.rollback()  # the next scenario starts from nothing
    return tables


async def test_the_collected_closures_and_kept_ratings_leave_what_the_writes_in_turn_leave(
    settings: BranchlineSettings,
) -> None:
    """#12: over random batches of closures, reopenings, registrations (a closure of a client
    with no row yet, a registration after it), facts changed between them, sales and ratings
    of two products and service-loop events, some applied out of their store's order (a
    re-projection of the client in the batch), with and without rows already there, a unit
    collecting its writes (the closure reason with the client's row, the ratings read once and
    kept) leaves every read model as a unit writing each in turn."""
    await prepare_database(settings)
    rng = random.Random(27)
    clients = ["C-80", "C-81"]
    pool = await open_read_model_pool(settings)  # the worker's connections (their codecs)
    try:
        async with pool.acquire() as conn:
            for scenario in range(150):
                before = random_closures(rng, clients, 1, rng.choice((0, 0, 6)))
                batch = random_closures(rng, clients, 100, rng.randint(1, 14))
                if len(batch) > 2 and rng.random() < 0.3:
                    i = rng.randrange(len(batch) - 1)
                    batch[i], batch[i + 1] = batch[i + 1], batch[i]  # one arrives late
                expected = await applied_rows(conn, before, batch, collect=False)
                got = await applied_rows(conn, before, batch, collect=True)
                assert got == expected, (scenario, [e.type for e in batch])
    finally:
        await pool.close()


async def test_the_read_ahead_holdings_and_ratings_leave_what_the_reads_in_turn_leave(
    settings: BranchlineSettings,
) -> None:
    """#12, Round 28 (D-15): over 150 random batches as above (sales, reassessments and
    ratings of two products among closures, reopenings, registrations and service-loop events;
    some with an event arriving late, so its client is re-projected and its holdings deleted
    and made again), a collecting unit that holds the batch's clients and reads ahead their
    holdings and the products' ratings in the read ahead (kept, then changed by the unit's
    own sales and re-ratings) leaves every read model as a unit reading and writing each in
    turn. And it reads no holdings and no ratings by statements of their own (each sale,
    lowering reassessment and re-rating of a holder did, and each batch's ratings)."""
    await prepare_database(settings)
    rng = random.Random(28)
    clients = ["C-90", "C-91", "C-92"]
    pool = await open_read_model_pool(settings)
    own_reads: list[str] = []
    reads_in_turn: list[str] = []
    reads: list[str] = []

    def log(query: LoggedQuery) -> None:
        read = query.query.lstrip().startswith("SELECT")
        if read and (RATINGS_READ in query.query or HOLDINGS_READ in query.query):
            reads.append(query.query)

    def counting(into: list[str]) -> Callable[[], None]:
        def begins() -> None:
            nonlocal reads
            reads = into

        return begins

    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(log)
            try:
                for scenario in range(150):
                    before = random_closures(rng, clients, 1, rng.choice((0, 6, 6)))
                    batch = random_closures(rng, clients, 100, rng.randint(1, 16))
                    if len(batch) > 2 and rng.random() < 0.3:
                        i = rng.randrange(len(batch) - 1)
                        batch[i], batch[i + 1] = batch[i + 1], batch[i]  # one arrives late
                    reads = []  # the reads of ``before``'s, not counted
                    expected = await applied_rows(
                        conn, before, batch, collect=False, batch_begins=counting(reads_in_turn)
                    )
                    await asyncio.sleep(0)  # the logger is called soon after each statement
                    reads = []
                    got = await applied_rows(
                        conn,
                        before,
                        batch,
                        collect=True,
                        read_ahead=True,
                        batch_begins=counting(own_reads),
                    )
                    await asyncio.sleep(0)
                    assert got == expected, (scenario, [e.type for e in batch])
            finally:
                conn.remove_query_logger(log)
    finally:
        await pool.close()
    # the workload reads holdings and ratings, in turn (127 statements with this seed)
    assert [q for q in reads_in_turn if HOLDINGS_READ in q]
    assert [q for q in reads_in_turn if RATINGS_READ in q]
    assert own_reads == []
