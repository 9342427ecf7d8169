"""End-to-end latency at a steady offered load (open loop).

Requests are sent on a fixed schedule (``rate`` per second, whatever the answers do: a
closed loop would slow down with the system and hide its queueing), each with its own event
id. For each accepted event: the moment its 202 arrived, and the moment a reader could first
see it in the followup read model (``fu_applied_events``) and in the audit trail
(``audit_ledger``), seen from outside by a poller (``watch``): the end of the first poll
whose answer held it. The poller's answer comes after the commit that made the row visible,
so the figure is never early; it is late by at most one poll window (reported).

The figure the benchmark reports for the target is the commit instead: the commit timestamp
of the transaction that wrote each row (``pg_xact_commit_timestamp(xmin)``, read once after
the load; the benchmark's PostgreSQL runs with ``track_commit_timestamp = on``,
bench/stack.py). PostgreSQL takes it in the commit, as the commit record's time, then writes
and flushes that record (``synchronous_commit``) and only then removes the transaction from
the shared process array, from which a new snapshot learns it is visible. So it is the instant
a reader could first see the row short of the commit's own WAL flush (and commits may become
visible in their flush order, not their timestamps'): never late, early by at most that flush,
where the poller's figure is late by up to a poll window. The pollers still run, to know when
every event has been applied, and their figures stay beside it. Two checks tie the clocks
together: no row is committed after a poller saw it, and no row's own timestamp is after its
commit (``ClockCheck``).

The rows' own timestamps are read too (``applied_at``, ``appended_at``), for comparison: both
are taken when the applying transaction starts (``now()``; the ledger's in Python before its
write, and hashed into the chain), so they miss that transaction's own duration and its
commit (docs/performance.md, Round 10). All clocks are this machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from bench.loadgen import RawHttpClient, percentile
from bench.workload import event_body


@dataclass(frozen=True)
class EndToEnd:
    offered_per_s: float
    answered: int
    http_p99_ms: float
    followup_missing: int  # accepted events the read model still lacked when the wait ended
    audit_missing: int
    followup_p50_ms: float  # accepted -> visible to a reader (the poller)
    followup_p99_ms: float
    audit_p50_ms: float
    audit_p99_ms: float
    followup_row_p99_ms: float  # accepted -> the row's own timestamp (applied_at)
    audit_row_p99_ms: float  # accepted -> appended_at
    poll_window_p99_ms: float  # how late a poll can see a commit (both pollers)
    audit_poll_window_p99_ms: float  # the same, the audit trail's poller alone
    # accepted -> the commit of the row's transaction (exact: what the target is judged on)
    followup_commit_p50_ms: float = 0.0
    followup_commit_p99_ms: float = 0.0
    audit_commit_p50_ms: float = 0.0
    audit_commit_p99_ms: float = 0.0


async def _send_open_loop(
    port: int,
    token: str,
    rate: float,
    duration_s: float,
    connections: int = 64,
    on_send: Callable[[uuid.UUID], None] | None = None,
) -> tuple[dict[uuid.UUID, float], list[float]]:
    """Sends ``rate`` events per second for ``duration_s``; returns event id -> wall-clock
    time its 202 arrived, and the HTTP latencies (from the scheduled send time).
    ``on_send`` is called with each event id just before its request is written."""
    answered: dict[uuid.UUID, float] = {}
    http: list[float] = []
    idle: asyncio.Queue[RawHttpClient] = asyncio.Queue()
    clients = [RawHttpClient("127.0.0.1", port, token) for _ in range(connections)]
    for client in clients:
        await client.__aenter__()
        idle.put_nowait(client)
    run = uuid.uuid4().hex[:8]
    total = int(rate * duration_s)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        client = await idle.get()  # a free connection (waiting here counts as latency)
        event_id = uuid.uuid4()
        body = orjson.dumps(event_body(i, run) | {"event_id": str(event_id)})
        if on_send is not None:
            on_send(event_id)
        try:
            status, answer = await client.post("/v1/events", body)
        finally:
            idle.put_nowait(client)
        if status != 202:
            raise AssertionError(f"POST answered {status}: {answer[:300]!r}")
        answered[event_id] = time.time()
        http.append(loop.time() - due)

    try:
        async with asyncio.timeout(duration_s + 120):
            await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        for client in clients:
            await client.__aexit__()
    return answered, http


async def _arrivals(
    dsn: str, sql: str, ids: list[uuid.UUID], within_s: float
) -> dict[uuid.UUID, float]:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + within_s
        while True:
            rows = await conn.fetch(sql, ids)
            if len(rows) >= len(ids) or time.monotonic() > deadline:
                return {r[0]: r[1].timestamp() for r in rows}
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


WATCH_INTERVAL_S = 0.02
"""The pause between two polls of one table: with a poll's own round trip, the window in
which a commit is placed (a few tens of ms, against a target of 300 ms)."""

WATCH_DUTY = 0.1
"""At most this share of a watcher's time is spent polling: after a poll that took ``t``, the
pause is at least ``t * (1 - WATCH_DUTY) / WATCH_DUTY``. A poll's cost grows with the ids still
pending (about 5.8 ms of the database's CPU for 2,000), so a fixed 20 ms pause took up to a
fifth of one of the two cores the measured stack shares, more the further a consumer fell
behind (Round 11), and slowed the very consumer it timed. A longer pause widens the window
in which a commit is placed; that window is reported (``e2e_poll_window_p99``)."""


def pause_after(poll_s: float) -> float:
    """The pause after a poll that took ``poll_s`` seconds (wall clock)."""
    return max(WATCH_INTERVAL_S, poll_s * (1.0 - WATCH_DUTY) / WATCH_DUTY)


WATCH_LIMIT = 2000
"""At most this many ids asked per poll, the oldest sent first (an event is applied after
most of those sent before it): bounds a poll's cost when a consumer falls behind. An event
left out of a poll is seen later, never earlier: the figure stays an upper bound."""


@dataclass
class Watch:
    """Events sent and not yet seen in one table (oldest first, as text), and when each was
    seen: the end of the first poll whose answer held it (wall clock). A row the poll's
    snapshot held was committed before that end and after the start of the previous poll,
    which did not hold it: ``windows`` keeps each poll's such interval."""

    pending: dict[str, None] = field(default_factory=dict)
    seen: dict[uuid.UUID, float] = field(default_factory=dict)
    windows: list[float] = field(default_factory=list)
    polls: int = 0  # each one a statement, and a transaction, of the table's database
    _previous_start: float | None = None

    def sent(self, event_id: uuid.UUID) -> None:
        self.pending[str(event_id)] = None

    def to_ask(self, limit: int = WATCH_LIMIT) -> list[str]:
        return list(itertools.islice(self.pending, limit))

    def answered(self, found: list[str], started: float, ended: float) -> None:
        """Records one poll (started and ended on the wall clock) and the ids it found."""
        self.polls += 1
        for event_id in found:
            if event_id in self.pending:
                del self.pending[event_id]
                self.seen[uuid.UUID(event_id)] = ended
        if found and self._previous_start is not None:
            self.windows.append(ended - self._previous_start)
        self._previous_start = started

    def nothing_pending(self, now: float) -> None:
        """A poll skipped (nothing to ask): every event sent from now on commits after now."""
        self._previous_start = now


def watch_sql(table: str) -> str:
    """A watcher's poll of ``table``: the ids go as one text literal and come back as text,
    cast in ``unnest`` (an index look-up each): asyncpg encoding and decoding each UUID in
    Python would take this process's CPU from the stack measured
    (``bench.followup_steady.applied``, Round 9)."""
    return (
        "SELECT w.event_id::text FROM unnest($1::text::uuid[]) AS w(event_id) "
        f"JOIN {table} t ON t.event_id = w.event_id"
    )


async def watch(
    conn: Any,
    table: str,
    seen: Watch,
    sending: asyncio.Event,
    within_s: float,
    pause_s: float = WATCH_INTERVAL_S,
) -> None:
    """Polls ``table`` on ``conn`` (an asyncpg connection, this watcher's alone) for the
    pending ids until sending has ended and every sent event was seen, or ``within_s`` after
    sending ended."""
    sql = watch_sql(table)
    deadline: float | None = None
    while True:
        if deadline is None and not sending.is_set():
            deadline = time.monotonic() + within_s
        ids = seen.to_ask()
        pause = pause_s
        if ids:
            started = time.time()
            rows = await conn.fetch(sql, "{" + ",".join(ids) + "}")
            ended = time.time()
            seen.answered([r[0] for r in rows], started, ended)
            pause = max(pause_s, pause_after(ended - started))
        else:
            seen.nothing_pending(time.time())
        if deadline is not None and (not seen.pending or time.monotonic() > deadline):
            return
        await asyncio.sleep(pause)


@contextlib.asynccontextmanager
async def watching(
    *targets: tuple[Any, str], within_s: float = 300, pause_s: float = WATCH_INTERVAL_S
) -> AsyncIterator[list[Watch]]:
    """One watcher per (connection, table) while the body runs; the body tells each
    ``Watch`` what it sends (``Watch.sent``, before the send). On leaving, waits until the
    watchers have seen every event sent, at most ``within_s``; if the body raises, they are
    stopped. The caller owns the connections: a tool that reads a watcher backend's CPU
    (``bench.followup_steady``) does so before closing it."""
    watches = [Watch() for _ in targets]
    sending = asyncio.Event()
    sending.set()
    tasks = [
        asyncio.create_task(watch(conn, table, seen, sending, within_s, pause_s))
        for (conn, table), seen in zip(targets, watches, strict=True)
    ]
    try:
        yield watches
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    sending.clear()  # the watchers now wait (bounded) for the events still pending
    await asyncio.gather(*tasks)


def _lags(
    answered: dict[uuid.UUID, float], arrived: dict[uuid.UUID, float], gave_up: float
) -> tuple[list[float], int]:
    """Each accepted event's lag, and how many had not arrived when the wait gave up (their
    lag counts as the time until then: a lower bound, so a slow consumer shows as a high
    percentile instead of stopping the benchmark)."""
    lags = sorted(max(0.0, arrived.get(e, gave_up) - t) for e, t in answered.items())
    return lags, len(answered) - len(arrived)


@dataclass(frozen=True)
class Lags:
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int  # had not arrived when the wait gave up (counted at the give-up time)


def lag_figures(
    started: dict[uuid.UUID, float], arrived: dict[uuid.UUID, float], gave_up: float
) -> Lags:
    """``started`` -> ``arrived`` for each event of ``started`` (wall clock, seconds)."""
    lags, missing = _lags(started, arrived, gave_up)
    return Lags(
        p50_ms=1000 * percentile(lags, 0.50),
        p99_ms=1000 * percentile(lags, 0.99),
        max_ms=1000 * lags[-1] if lags else 0.0,
        missing=missing,
    )


def poll_window_p99_ms(*watches: Watch) -> float:
    """How late the watchers' polls could see a commit, p99 over all their windows (ms)."""
    return 1000 * percentile(sorted(w for seen in watches for w in seen.windows) or [0.0], 0.99)


async def _row_times(dsn: str, sql: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, float]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r[0]: r[1].timestamp() for r in await conn.fetch(sql, ids)}
    finally:
        await conn.close()


FOLLOWUP_ROWS = "SELECT event_id, applied_at FROM fu_applied_events WHERE event_id = ANY($1)"
AUDIT_ROWS = "SELECT event_id, appended_at FROM audit_ledger WHERE event_id = ANY($1)"
# Both tables are insert-only, so a row's xmin is the transaction that made it visible. Read
# right after the load: a row frozen by VACUUM would have lost it (NULL, counted missing).
FOLLOWUP_COMMITS = (
    "SELECT event_id, pg_xact_commit_timestamp(xmin) FROM fu_applied_events "
    "WHERE event_id = ANY($1)"
)
AUDIT_COMMITS = (
    "SELECT event_id, pg_xact_commit_timestamp(xmin) FROM audit_ledger WHERE event_id = ANY($1)"
)


async def _commit_times(dsn: str, sql: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, float]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r[0]: r[1].timestamp() for r in await conn.fetch(sql, ids) if r[1] is not None}
    finally:
        await conn.close()


@dataclass(frozen=True)
class ClockCheck:
    """The three clocks of one table's rows, which must agree: row timestamp <= commit <=
    the poller's sighting, for every row that has all of them (all this machine's wall clock,
    PostgreSQL's taken by its backend, the sighting by this process)."""

    committed_after_seen: int  # committed after a poll's answer held it: impossible
    stamped_after_commit: int  # the row's own timestamp after its commit: impossible
    worst_ms: float  # the largest such disagreement (0 when none)

    @staticmethod
    def of(
        row: dict[uuid.UUID, float], commit: dict[uuid.UUID, float], seen: dict[uuid.UUID, float]
    ) -> ClockCheck:
        late = [commit[e] - seen[e] for e in commit.keys() & seen.keys() if commit[e] > seen[e]]
        early = [row[e] - commit[e] for e in row.keys() & commit.keys() if row[e] > commit[e]]
        return ClockCheck(len(late), len(early), 1000 * max(late + early, default=0.0))

    def require(self, table: str) -> None:
        if self.committed_after_seen or self.stamped_after_commit:
            raise AssertionError(
                f"{table}: the clocks disagree: {self.committed_after_seen} rows committed "
                f"after the poller saw them, {self.stamped_after_commit} stamped after their "
                f"commit (worst by {self.worst_ms:.3f} ms)"
            )


async def end_to_end(
    port: int,
    token: str,
    rate: float,
    duration_s: float,
    followup_dsn: str,
    audit_dsn: str,
    watch_pause_s: float = WATCH_INTERVAL_S,
) -> EndToEnd:
    """The steady load and its lags. ``watch_pause_s``: the pollers' least pause between two
    polls; the exact (commit) figures do not depend on it, only the pollers' own do."""
    async with contextlib.AsyncExitStack() as closing:
        followup_conn = await asyncpg.connect(followup_dsn)
        closing.push_async_callback(followup_conn.close)
        audit_conn = await asyncpg.connect(audit_dsn)
        closing.push_async_callback(audit_conn.close)
        async with watching(
            (followup_conn, "fu_applied_events"),
            (audit_conn, "audit_ledger"),
            pause_s=watch_pause_s,
        ) as (
            followup_seen,
            audit_seen,
        ):

            def sent(event_id: uuid.UUID) -> None:
                followup_seen.sent(event_id)
                audit_seen.sent(event_id)

            answered, http = await _send_open_loop(port, token, rate, duration_s, on_send=sent)
    gave_up = time.time()
    ids = list(answered)
    followup, followup_missing = _lags(answered, followup_seen.seen, gave_up)
    audit, audit_missing = _lags(answered, audit_seen.seen, gave_up)
    followup_stamps = await _row_times(followup_dsn, FOLLOWUP_ROWS, ids)
    audit_stamps = await _row_times(audit_dsn, AUDIT_ROWS, ids)
    followup_commits = await _commit_times(followup_dsn, FOLLOWUP_COMMITS, ids)
    audit_commits = await _commit_times(audit_dsn, AUDIT_COMMITS, ids)
    ClockCheck.of(followup_stamps, followup_commits, followup_seen.seen).require(
        "fu_applied_events"
    )
    ClockCheck.of(audit_stamps, audit_commits, audit_seen.seen).require("audit_ledger")
    followup_rows, _ = _lags(answered, followup_stamps, gave_up)
    audit_rows, _ = _lags(answered, audit_stamps, gave_up)
    followup_commit = lag_figures(answered, followup_commits, gave_up)
    audit_commit = lag_figures(answered, audit_commits, gave_up)
    http.sort()
    return EndToEnd(
        offered_per_s=rate,
        answered=len(answered),
        http_p99_ms=1000 * percentile(http, 0.99),
        followup_missing=followup_missing,
        audit_missing=audit_missing,
        followup_p50_ms=1000 * percentile(followup, 0.50),
        followup_p99_ms=1000 * percentile(followup, 0.99),
        audit_p50_ms=1000 * percentile(audit, 0.50),
        audit_p99_ms=1000 * percentile(audit, 0.99),
        followup_row_p99_ms=1000 * percentile(followup_rows, 0.99),
        audit_row_p99_ms=1000 * percentile(audit_rows, 0.99),
        poll_window_p99_ms=poll_window_p99_ms(followup_seen, audit_seen),
        # The audit poller's own windows: its polls stay short while the followup poller's
        # grow with the worker's lag (WATCH_DUTY), so the audit figure has its own bound.
        audit_poll_window_p99_ms=poll_window_p99_ms(audit_seen),
        followup_commit_p50_ms=followup_commit.p50_ms,
        followup_commit_p99_ms=followup_commit.p99_ms,
        audit_commit_p50_ms=audit_commit.p50_ms,
        audit_commit_p99_ms=audit_commit.p99_ms,
    )


async def drain(
    followup_dsn: str, audit_dsn: str, quiet_s: float = 5.0, within_s: float = 600
) -> dict[str, float]:
    """Wait until the followup worker and the audit consumer have caught up (their applied
    counts stop growing); returns how long each took (seconds; 0 when it was not behind)."""
    queries = {
        "followup": (followup_dsn, "SELECT count(*) FROM fu_applied_events"),
        "audit": (audit_dsn, "SELECT count(*) FROM audit_ledger"),
    }
    conns = {name: await asyncpg.connect(dsn) for name, (dsn, _) in queries.items()}
    try:
        first = {n: int(await conns[n].fetchval(q)) for n, (_, q) in queries.items()}
        last, changed = dict(first), {n: time.monotonic() for n in queries}
        started = time.monotonic()
        while time.monotonic() - started < within_s:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for name, (_, sql) in queries.items():
                count = int(await conns[name].fetchval(sql))
                if count != last[name]:
                    last[name], changed[name] = count, now
            if all(now - t >= quiet_s for t in changed.values()):
                break
        return {
            name: (changed[name] - started) if last[name] != first[name] else 0.0
            for name in queries
        }
    finally:
        for conn in conns.values():
            await conn.close()


async def vacuum(dsns: list[str]) -> float:
    """``VACUUM (ANALYZE)`` each database; returns the seconds it took (#12).

    Run before the steady measure of every repetition: a burst written just before (the
    previous repetition's 1,000-event batches and its 10,000-event client, about 25,000 rows
    into tables that held a few thousand) leaves every table of the stack past autovacuum's
    thresholds, and the first vacuum of freshly written pages rewrites all of them (hint bits,
    visibility map). Left to autovacuum, that debt was paid during the next repetition's steady
    measure and not in the first's. Paid here, in every repetition, the steady measure sees the
    same state each time, and the debt itself is reported (``vacuum_before_steady``), not
    hidden."""
    started = time.perf_counter()
    for dsn in dsns:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()
    return time.perf_counter() - started


WAL_IO = (
    "SELECT coalesce(sum(writes), 0)::float8, coalesce(sum(write_time), 0)::float8, "
    "coalesce(sum(fsyncs), 0)::float8, coalesce(sum(fsync_time), 0)::float8 "
    "FROM pg_stat_io WHERE object = 'wal'"
)
"""The cluster's WAL writes and syncs so far, every backend type (PostgreSQL 18 moved them
from ``pg_stat_wal`` to ``pg_stat_io``); their times are counted only with
``track_wal_io_timing`` (on in the benchmark's PostgreSQL, bench/stack.py), in ms."""

WAL_SAMPLE_S = 1.0
"""A busy backend hands its I/O statistics over at most once a second: sampling more often
would only split one backend's second between two samples."""

WAL_WORST_MIN_SYNCS = 20
"""A sampling interval counts for the worst second only with at least this many syncs: one
slow sync in a nearly idle second says nothing of the flushes the load's commits waited for."""


@dataclass(frozen=True)
class WalIo:
    """One sample of :data:`WAL_IO`: ``at`` on the monotonic clock, times in ms."""

    at: float
    writes: float
    write_ms: float
    syncs: float
    sync_ms: float


@dataclass(frozen=True)
class WalFlushes:
    """What a WAL flush cost during a load: the write and fsync time per fsync (a flush is a
    write then a sync of what was written), mean over the load and the worst sampling
    interval's mean. A commit's timestamp is taken before its commit record is written and
    flushed: the commit-time figures are early by about one flush (more when the commit waits
    for a flush under way before its own)."""

    syncs: int
    per_sync_ms: float
    fsync_ms: float  # the sync alone, mean
    worst_per_sync_ms: float

    @staticmethod
    def of(samples: list[WalIo], min_syncs: int = WAL_WORST_MIN_SYNCS) -> WalFlushes | None:
        """From samples in time order; None when no sync happened between the first and the
        last (nothing to say)."""
        first, last = samples[0], samples[-1]
        syncs = last.syncs - first.syncs
        if syncs <= 0:
            return None
        per_sync = (last.write_ms - first.write_ms + last.sync_ms - first.sync_ms) / syncs
        worst = [
            (b.write_ms - a.write_ms + b.sync_ms - a.sync_ms) / (b.syncs - a.syncs)
            for a, b in itertools.pairwise(samples)
            if b.syncs - a.syncs >= min_syncs
        ]
        return WalFlushes(
            syncs=int(syncs),
            per_sync_ms=per_sync,
            fsync_ms=(last.sync_ms - first.sync_ms) / syncs,
            worst_per_sync_ms=max(worst, default=per_sync),
        )


async def wal_io(conn: Any) -> WalIo:
    # a snapshot of the statistics per call, not the transaction's first (stats_fetch_consistency)
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(WAL_IO)
    return WalIo(time.monotonic(), row[0], row[1], row[2], row[3])


@contextlib.asynccontextmanager
async def wal_flushes(
    dsn: str, every_s: float = WAL_SAMPLE_S, settle_s: float = 1.2
) -> AsyncIterator[list[WalIo]]:
    """Samples the cluster's WAL I/O every ``every_s`` while the body runs, and once more
    ``settle_s`` after it (a backend that went idle hands its last second over within a
    second): the samples, for :meth:`WalFlushes.of`. One connection of its own."""
    conn = await asyncpg.connect(dsn)
    samples = [await wal_io(conn)]

    async def sample() -> None:
        while True:
            await asyncio.sleep(every_s)
            samples.append(await wal_io(conn))

    task = asyncio.create_task(sample())
    try:
        yield samples
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(settle_s)
        samples.append(await wal_io(conn))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()


def drain_rate(commits: list[float], resumed_at: float) -> float:
    """Events per second a consumer applied a backlog at, from the commit times of the
    backlog's rows (seconds): the rows committed after its first commit, over the time from
    that commit to the last. What came before the first commit (the rejoin after a pause, the
    first fetch) is not its rate. All in one commit: the backlog over the time since
    ``resumed_at``."""
    ordered = sorted(commits)
    first, last = ordered[0], ordered[-1]
    after = sum(1 for t in ordered if t > first)
    if not after:
        return len(ordered) / max(last - resumed_at, 1e-3)
    return after / (last - first)
