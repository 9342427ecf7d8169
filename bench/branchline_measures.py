"""Branchline's own figures: the intake API over HTTP (the whole stack running) and the
outbox relay."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench import latency
from bench.loadgen import Latencies, RawHttpClient, closed_loop
from bench.stack import BenchStack
from bench.workload import consent_body, event_body
from branchline_shared.events.catalogue import CATALOGUE_VERSION
from branchline_shared.events.envelope import Actor, RecordedEvent, client_stream_id
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.http.auth import Role, utcnow
from branchline_shared.http.token_keys import token_codec
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import closed, start_or_close
from branchline_shared.kafka.topics import TopicSpec, ensure_topics
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings


def branch_tokens(stack: BenchStack, count: int) -> list[str]:
    """``count`` branch systems' tokens (each its own subject, the workload's branch): the
    stack's own first, so that 1 is the benchmark's usual load."""
    codec = token_codec(stack.settings, "intake")
    return [stack.token] + [
        codec.issue(
            f"bench-branch-{k}",
            [Role.BRANCH_SYSTEM],
            ttl=timedelta(hours=6),
            now=utcnow(),
            branch_id="BR-1",  # the workload's branch (bench/workload.py)
        )
        for k in range(1, count)
    ]


async def single_posts(
    port: int,
    token: str | list[str],
    events: int,
    connections: int = 64,
    *,
    event_ids: bool = False,
    resend_share: float = 0.0,
    refused_share: float = 0.0,
    opened: list[RawHttpClient] | None = None,
) -> Latencies:
    """``events`` single POSTs from ``connections`` connections; ``token``: one, or one per
    branch system (``closed_loop``). ``event_ids``: each event sent with an ``event_id`` of
    its own (a UUIDv4, as a branch system that sends its own idempotency keys chooses it).
    ``resend_share``: that share of the POSTs resends (:func:`with_resends`).
    ``refused_share``: that share of the POSTs refused by a rule (:func:`with_refusals`),
    answered 409. ``opened``: the connections, opened already (``closed_loop``)."""
    run = uuid.uuid4().hex[:8]
    bodies = [orjson.dumps(with_event_id(event_body(i, run), event_ids)) for i in range(events)]
    if refused_share > 0:
        bodies = with_refusals(bodies, refused_share, run, event_ids)
    if resend_share > 0:
        systems = 1 if isinstance(token, str) else len(token)
        bodies = with_resends(bodies, resend_share, connections, systems)
    expect: int | frozenset[int] = frozenset({202, 409}) if refused_share > 0 else 202
    return await closed_loop(
        port, token, "/v1/events", bodies, connections, expect=expect, opened=opened
    )


def with_refusals(
    bodies: list[bytes], share: float, run: str, event_ids: bool, seed: int = 28
) -> list[bytes]:
    """``bodies`` with about ``share`` of them replaced by a consent for a client never
    registered, each its own: refused by D-09 (409 ``rule-violation``) and its refusal
    recorded, a refusal decided on a guessed group's guess (Round 28, #12). With
    ``event_ids``, each with an id of its own. Seeded: both trees of a pair send the same
    pattern."""
    chosen = random.Random(seed)
    return [
        orjson.dumps(with_event_id(consent_body(f"C-{run}-never-{i}"), event_ids))
        if chosen.random() < share
        else body
        for i, body in enumerate(bodies)
    ]


RESENT_FROM = 8
"""A resend repeats one of its branch system's last this many POSTs answered (#12)."""


def with_resends(
    bodies: list[bytes], share: float, connections: int, systems: int, seed: int = 25
) -> list[bytes]:
    """``bodies`` with about ``share`` of them replaced by resends, as a branch system resends
    (a retry after a timeout, on a connection of its own, or a day's file replayed, #12): the
    same body, its ``event_id`` too, of a POST its branch system (the same token) sent and
    had answered shortly before: one of that system's last :data:`RESENT_FROM` originals
    sent at least two rounds earlier. ``closed_loop`` sends ``bodies[c::connections]`` from
    connection ``c`` with token ``c % systems``, one POST at a time, so index ``j`` was
    answered before index ``i`` when ``j <= i - 2 * connections`` unless its connection fell
    two rounds behind (then the resend meets its original in flight, and is still answered
    as a resend is). Which intake process serves a connection is chance, so a resend reaches
    the process that accepted its original or another one. Every one is answered 202 (a
    duplicate at the stored position), so ``closed_loop``'s ``expect`` holds. Seeded: both
    trees of a pair send the same pattern."""
    chosen = random.Random(seed)
    out = list(bodies)
    originals: dict[int, list[int]] = {}  # branch system -> its originals' indexes, in order
    for i in range(len(out)):
        mine = originals.setdefault(i % connections % systems, [])
        answered = [j for j in mine[-(RESENT_FROM + 2 * connections) :] if j <= i - 2 * connections]
        if answered and chosen.random() < share:
            out[i] = out[chosen.choice(answered[-RESENT_FROM:])]
        else:
            mine.append(i)
    return out


def with_event_id(body: dict[str, Any], chosen: bool) -> dict[str, Any]:
    """``body`` with a caller-chosen ``event_id`` (a UUIDv4) if ``chosen``."""
    return body | {"event_id": str(uuid.uuid4())} if chosen else body


LOCK_TIMEOUT_ERROR = "ERROR:  canceling statement due to lock timeout"
"""A statement ended by ``lock_timeout`` (55P03; a ``NOWAIT`` lock that cannot be taken
logs ``could not obtain lock`` instead)."""

DEADLOCK_ERROR = "ERROR:  deadlock detected"


@dataclass(frozen=True)
class Reruns:
    """Intake's reruns during a measure, counted across every intake process (#12): they
    share one listening socket, so one process's /metrics is a part of the whole, and which
    part is chance. Counted instead where every process's transactions end, in the server's
    log (each error is written there before its client hears of it), intake's database
    only (:data:`LOG_LINE_PREFIX`):

    - ``id_order``: statements ended by ``lock_timeout``. In intake only a write out of the
      id order sets one (``_WRITE_NO_WAIT_SQL``), and each such 55P03 is one
      ``EventIdsBusy``, one run again (``branchline_intake_event_id_order_reruns_total``): a
      group's callers each alone, or a batch in one write; neither of those runs sets it.
    - ``lock_cycles``: deadlocks the server broke by rolling an intake transaction back;
      each runs again (``branchline_intake_lock_cycle_reruns_total``), the third raised."""

    id_order: int
    lock_cycles: int


UNIQUE_VIOLATION_ERROR = "ERROR:  duplicate key value violates unique constraint"
"""A statement refused by a unique index (23505). In intake under a resend load: a guessed
group's one statement that met a stored stream or event id (``_GUESSED_WRITE_SQL``), after
which the group is decided again the ordinary way (#12)."""


def unique_violations_in_log(log: Path | None, offset: int, database: str) -> int:
    """Statements of ``database`` refused by a unique index, in the server's log past
    ``offset`` (:data:`UNIQUE_VIOLATION_ERROR`)."""
    return _errors_in_log(log, offset, database, [UNIQUE_VIOLATION_ERROR])[UNIQUE_VIOLATION_ERROR]


def _errors_in_log(
    log: Path | None, offset: int, database: str, errors: list[str]
) -> dict[str, int]:
    counts = dict.fromkeys(errors, 0)
    if log is None or not log.exists():
        return counts
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    mark = f":{database}:"
    for line in text.splitlines():
        for error in counts:
            if mark + error in line:
                counts[error] += 1
    return counts


def log_offset(log: Path | None) -> int:
    """The server log's size now (bytes): where a measure's lines will start."""
    return log.stat().st_size if log is not None and log.exists() else 0


def reruns_in_log(log: Path | None, offset: int, database: str) -> Reruns:
    """:class:`Reruns` of ``database``'s transactions in the server's log past ``offset``."""
    counts = _errors_in_log(log, offset, database, [LOCK_TIMEOUT_ERROR, DEADLOCK_ERROR])
    return Reruns(id_order=counts[LOCK_TIMEOUT_ERROR], lock_cycles=counts[DEADLOCK_ERROR])


async def register_clients(
    port: int, token: str | list[str], per_connection: int, connections: int = 64
) -> str:
    """``connections * per_connection`` new clients registered (client ``i`` by connection
    ``i % connections``), for :func:`existing_client_posts`; answers their run's id."""
    run = uuid.uuid4().hex[:8]
    bodies = [orjson.dumps(event_body(i, run)) for i in range(connections * per_connection)]
    await closed_loop(port, token, "/v1/events", bodies, connections, expect=202)
    return run


async def existing_client_posts(
    port: int,
    token: str | list[str],
    run: str,
    events: int,
    per_connection: int,
    connections: int = 64,
    *,
    opened: list[RawHttpClient] | None = None,
) -> Latencies:
    """``events`` single POSTs of consents to the clients :func:`register_clients` registered
    (a consent after a registration: a bank's traffic is mostly events for clients that
    exist, #12), each client always sent by the same connection (a client's events come from
    its branch's system): connection ``c`` sends for clients ``c + connections * m`` in turn.
    ``opened``: the connections, opened already (``closed_loop``; e.g. balanced)."""
    bodies = [
        orjson.dumps(
            consent_body(
                f"C-{run}-{j % connections + connections * ((j // connections) % per_connection)}"
            )
        )
        for j in range(events)
    ]
    return await closed_loop(
        port, token, "/v1/events", bodies, connections, expect=202, opened=opened
    )


async def batches(port: int, token: str, events: int, per_batch: int = 1000) -> float:
    run = uuid.uuid4().hex[:8]
    count = max(1, events // per_batch)
    bodies = [
        orjson.dumps({"events": [event_body(b * per_batch + i, run) for i in range(per_batch)]})
        for b in range(count)
    ]
    async with RawHttpClient("127.0.0.1", port, token) as http:
        started = time.perf_counter()
        for body in bodies:
            status, answer = await http.post("/v1/events:batch", body)
            if status != 200 or b'"status":409' in answer or b'"status":422' in answer:
                raise AssertionError(f"batch answered {status}: {answer[:300]!r}")
        return count * per_batch / (time.perf_counter() - started)


def recorded(i: int, run: str, now: datetime) -> RecordedEvent:
    body = event_body(i, run)
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=body["type"],
        schema_version=CATALOGUE_VERSION[body["type"]],
        occurred_at=datetime.fromisoformat(body["occurred_at"]),
        recorded_at=now,
        source="intake",
        actor=Actor.model_validate(body["actor"]),
        client_id=body["client_id"],
        branch_id=body["branch_id"],
        channel=body["channel"],
        stream_id=client_stream_id(body["client_id"]),
        stream_version=1,
        data=body["data"],
    )


async def relay(settings: BranchlineSettings, dsn: str, topic: str, events: int) -> float:
    """The relay's own rate: ``events`` committed first (not timed) into ``dsn``, an event
    store the caller migrated (``BenchStack.database(name, migrated="eventstore")``), then
    published by the real :class:`OutboxRelay` until its backlog is empty."""
    await ensure_topics(settings.kafka_bootstrap, [TopicSpec(topic, 4, 1)])
    pool = await open_pool(dsn, min_size=1, max_size=4)
    producer = make_producer(settings, client_id="bench-relay")
    await start_or_close(producer)
    try:
        store = PostgresEventStore(pool)
        run, now = uuid.uuid4().hex[:8], datetime.now(UTC)
        for first in range(0, events, 1000):
            async with store.unit_of_work() as uow:
                for i in range(first, min(events, first + 1000)):
                    uow.stage(recorded(i, run, now), topic=topic, submission_hash=None)
                await uow.commit()
        outbox = OutboxRelay(
            pool=pool, producer=producer, store_name="bench", batch_size=settings.relay_batch_size
        )
        published = 0
        started = time.perf_counter()
        while published < events:
            async with asyncio.timeout(60):
                done = await outbox.publish_once()
            if not done:
                raise AssertionError(f"relay published {published} of {events}")
            published += done
        return published / (time.perf_counter() - started)
    finally:
        await closed(producer, flush_within_s=settings.kafka_producer_stop_flush_s)
        await pool.close()


async def metrics_text(port: int) -> str:
    """A component's /metrics (Prometheus text)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(10):
            answer = await reader.read()
        return answer.decode(errors="replace")
    finally:
        writer.close()


def metric_values(text: str, name: str) -> list[float]:
    """The values of every sample of ``name`` in a /metrics text, whatever its labels."""
    values = []
    for line in text.splitlines():
        if line.startswith((f"{name} ", f"{name}{{")):
            values.append(float(line.rsplit(None, 1)[1]))
    return values


async def log_end(database_url: str) -> int:
    """The intake store's last global position (0 when empty)."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM es_events"))
    finally:
        await conn.close()


async def events_per_commit(database_url: str, after: int) -> float | None:
    """Events per committing transaction among the intake store's events past ``after``: the
    mean group commit of every intake process. Read from the rows, not from /metrics: an
    intake's /metrics is one process's view, and the process a connection reaches may have
    served none of the load (a child that was still starting when the load's connections
    were accepted by the other), which left the figure out of the report."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS events, count(DISTINCT tx_id) AS commits "
            "FROM es_events WHERE global_position > $1",
            after,
        )
    finally:
        await conn.close()
    if row is None or not row["commits"]:
        return None
    return float(row["events"]) / float(row["commits"])


async def fetch_wait(port: int) -> tuple[float, float] | None:
    """A consumer process's fetch wait now (ms; its highest if it runs several) and how many
    times it was raised so far, from its /metrics: a raised wait delays what reaches a
    consumer at the end of its log by up to half of it on the dev broker (#12). None if the
    process does not answer."""
    try:
        text = await metrics_text(port)
    except (OSError, TimeoutError):
        return None
    waits = metric_values(text, "branchline_consumer_fetch_wait_ms")
    raises = metric_values(text, "branchline_consumer_fetch_wait_raises_total")
    if not waits:
        return None
    return max(waits), sum(raises)


async def post_costs_with_history(
    port: int,
    token: str,
    histories: dict[str, int],
    posts: int,
    settle: Callable[[], Awaitable[object]],
) -> dict[str, float]:
    """Median latency (ms) of one POST /v1/events, one at a time, for clients that already have
    so many events (key -> history): the write must not re-read them (O(1) in history).

    Every client is filled first, then ``settle`` waits for the consumers to catch up with the
    fill, then the clients' POSTs alternate: each client's figure is taken under the same
    conditions (measured one after the other, the second would pay for the backlog the first
    one's fill left to the consumers on the same two cores)."""
    clients: dict[str, str] = {}
    latencies: dict[str, list[float]] = {key: [] for key in histories}
    async with RawHttpClient("127.0.0.1", port, token) as http:
        for key, history in histories.items():
            clients[key] = await _client_with_history(http, history)
    await settle()
    # a new connection: the server closes an idle keep-alive one while the consumers settle
    async with RawHttpClient("127.0.0.1", port, token) as http:
        for _ in range(posts):
            for key, client_id in clients.items():
                body = orjson.dumps(consent_body(client_id))
                started = time.perf_counter()
                status, answer = await http.post("/v1/events", body)
                latencies[key].append(time.perf_counter() - started)
                if status != 202:
                    raise AssertionError(f"POST answered {status}: {answer[:300]!r}")
    return {key: 1000 * statistics.median(values) for key, values in latencies.items()}


async def _client_with_history(http: RawHttpClient, history: int) -> str:
    client_id = f"C-H{history}-{uuid.uuid4().hex[:6]}"
    status, answer = await http.post(
        "/v1/events", orjson.dumps(event_body(0, "h") | {"client_id": client_id})
    )
    if status != 202:
        raise AssertionError(f"registration answered {status}: {answer[:300]!r}")
    remaining = history - 1
    while remaining > 0:
        size = min(1000, remaining)
        body = orjson.dumps({"events": [consent_body(client_id) for _ in range(size)]})
        status, answer = await http.post("/v1/events:batch", body)
        if status != 200 or b'"status":4' in answer:
            raise AssertionError(f"filling answered {status}: {answer[:300]!r}")
        remaining -= size
    return client_id


CONSUMERS = {
    "followup": ("followup-worker", latency.FOLLOWUP_COMMITS),
    "audit": ("audit-consumer", latency.AUDIT_COMMITS),
}


@dataclass(frozen=True)
class Drained:
    per_s: float  # latency.drain_rate: the consumer's rate on the backlog
    first_commit_s: float  # from the resume to its first commit of the backlog (the rejoin)
    took_s: float  # from the resume to its last


async def drain_capacity(
    stack: BenchStack, events: int, per_batch: int = 1000, within_s: float = 300
) -> dict[str, Drained]:
    """How fast each consumer works off a backlog: the highest open-loop rate it can keep up
    with, with the stack otherwise idle (#12). Both consumers are held still (SIGSTOP), the
    steady load's kind of event (a new client's registration) is written ``events`` times
    with the batch endpoint and published by intake's relay, then both are continued at once
    and each one's rate is read from the commit times of the rows it wrote
    (``latency.drain_rate``). Intake does nothing meanwhile, so this is an upper bound: under
    the steady load intake and the broker take the same two cores."""
    s = stack.settings
    run = uuid.uuid4().hex[:8]
    ids = [uuid.uuid4() for _ in range(events)]
    bodies = [
        orjson.dumps(
            {
                "events": [
                    event_body(i, run) | {"event_id": str(ids[i])}
                    for i in range(first, min(events, first + per_batch))
                ]
            }
        )
        for first in range(0, events, per_batch)
    ]
    with stack.paused(*(component for component, _sql in CONSUMERS.values())):
        async with RawHttpClient("127.0.0.1", s.intake_port, stack.token) as http:
            for body in bodies:
                status, answer = await http.post("/v1/events:batch", body)
                if status != 200 or b'"status":4' in answer:
                    raise AssertionError(f"batch answered {status}: {answer[:300]!r}")
        # On the broker before the consumers go on: their rate, not the relay's.
        await _until(s.intake_database_url, UNPUBLISHED, 0, within_s)
    resumed_at = time.time()
    asked = "{" + ",".join(map(str, ids)) + "}"
    drained: dict[str, Drained] = {}
    for name, (_component, sql) in CONSUMERS.items():
        dsn = s.followup_database_url if name == "followup" else s.audit_database_url
        table = "fu_applied_events" if name == "followup" else "audit_ledger"
        await _until(dsn, HELD.format(table=table), events, within_s, asked)
        conn = await asyncpg.connect(dsn)
        try:
            commits = [r[1].timestamp() for r in await conn.fetch(sql, ids) if r[1] is not None]
        finally:
            await conn.close()
        if len(commits) < events:
            raise AssertionError(f"{name}: {len(commits)} of {events} commit times")
        drained[name] = Drained(
            per_s=latency.drain_rate(commits, resumed_at),
            first_commit_s=min(commits) - resumed_at,
            took_s=max(commits) - resumed_at,
        )
    return drained


UNPUBLISHED = "SELECT count(*) FROM es_outbox WHERE published_at IS NULL"
HELD = (
    "SELECT count(*) FROM unnest($1::text::uuid[]) AS w(event_id) "
    "JOIN {table} t ON t.event_id = w.event_id"
)


async def _until(dsn: str, sql: str, count: int, within_s: float, *args: object) -> None:
    """Polls ``sql`` (a count) until it answers ``count``, at most ``within_s``."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + within_s
        while (found := int(await conn.fetchval(sql, *args))) != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{found}, not {count}, after {within_s:.0f} s: {sql}")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
