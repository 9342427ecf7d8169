"""The followup worker alone, through Kafka: its lag at a steady offered load, and how fast it
drains a backlog (#12).

Starts an embedded PostgreSQL and the tansu broker, the followup worker as it runs (its
consumer, batches, timer runner, relay) in this process, and publishes what the benchmark's
steady load writes (one ``client.registered`` of a new client per event) straight to the
intake topic, with the headers intake's relay sets: at ``--rate`` events per second for
``--seconds`` (open loop), then a backlog of ``--backlog`` events published at once. For the
steady part it prints the lag from each publish to the moment a reader can see the event in
the read model, p50 and p99, seen by the benchmark's watcher (``bench.latency.watching``, its
own connection: never early, late by at most the poll window printed beside), and beside it
the lag read from the rows' own timestamps (``fu_applied_events.applied_at``, the applying
transaction's start: it misses that transaction's duration and commit, docs/performance.md,
Round 10); for the backlog, events per second. Intake,
its relay and the audit consumer are not running: what the worker needs of the two cores is
measured on its own (``--cpu`` prints this process's CPU per event and PostgreSQL's).

    python -m bench.followup_steady [--rate 250] [--seconds 20] [--backlog 3000]
                                    [--worker full|ack|off] [--relay-min-interval-s S]
                                    [--statements] [--profile FILE] [--freeze]

``--worker`` splits the process's CPU per event between its parts: ``full`` is the worker as
it runs; ``ack`` is the same consumer committing what it is handed without applying
it (aiokafka's and the consumer loop's own work per event, with the relay and timer runner idle);
``off`` runs no worker (the publishing alone). With ``ack`` and ``off`` nothing is applied, so
no lag is printed: the CPU is taken over the publishing and a settling wait of
``SETTLE_S`` seconds (idle polling included). ``--relay-min-interval-s`` overrides
``followup_relay_min_interval_s`` (0: the relay's round per commit, as before Round 6).
``--statements`` counts what this process's connections send during the steady part (worker,
relay, timer runner, pool resets, BEGIN and COMMIT included: each one round trip) and prints
them per event by text; ``--profile`` writes a cProfile (CPU time) of the steady part (all of the
process: the publishing too) sorted by cumulative time. At a low ``--rate`` (20) every event
is a batch of one, so per event is per batch. ``--freeze``: once the worker has started, the
heap is frozen and the young collections made less often, as the worker process does once
started (:func:`freeze_batch_heap`; the bench's own objects made before are frozen too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402

from bench import latency  # noqa: E402
from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_followup import (  # noqa: E402
    STATEMENTS,
    count_statements,
    server_cpu_seconds,
)
from bench.scratch import run_in_scratch  # noqa: E402
from bench.stack import process_cpu_seconds  # noqa: E402
from branchline_followup.bootstrap import running_worker  # noqa: E402
from branchline_followup.entrypoints import worker as worker_module  # noqa: E402
from branchline_shared.events.envelope import Actor, RecordedEvent  # noqa: E402
from branchline_shared.http.startup_heap import freeze_batch_heap  # noqa: E402
from branchline_shared.kafka.starting import closed, start_or_close  # noqa: E402
from branchline_shared.kafka.topics import declare_topics  # noqa: E402
from branchline_shared.kafka.wire import event_headers  # noqa: E402
from branchline_shared.settings import FollowupSettings  # noqa: E402

SETTLE_S = 3.0


def registration(n: int, run: str) -> RecordedEvent:
    now = datetime.now(UTC)
    client = f"C-{run}-{n}"
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type="client.registered",
        occurred_at=now,
        recorded_at=now,
        source="intake",
        actor=Actor(id="s-1", role="teller"),
        client_id=client,
        branch_id="BR-1",
        stream_id=f"client-{client}",
        stream_version=1,
        data={"client_type": "individual", "rm_id": "rm-1"},
    )


def lag_text(visible: latency.Lags, rows: latency.Lags, window_p99_ms: float) -> str:
    """The steady part's lag: to visibility first (the figure), then from the rows' own
    timestamps (labelled as such, for comparison with the figures before Round 12)."""
    return (
        f"lag to visibility p50 {visible.p50_ms:.0f} ms, p99 {visible.p99_ms:.0f} ms "
        f"(poll window p99 {window_p99_ms:.0f} ms), {visible.missing} not visible; "
        f"from the rows' applied_at p50 {rows.p50_ms:.0f} ms, p99 {rows.p99_ms:.0f} ms"
    )


async def applied(conn: Any, ids: list[uuid.UUID], within_s: float) -> dict[uuid.UUID, float]:
    """When each of ``ids`` was applied (those applied within ``within_s``).

    Each poll asks only for the ids not found yet, as one text literal built when that set
    changes: asking for every id as a ``uuid[]`` every 0.1 s made asyncpg encode each UUID in
    Python (a behind worker, 6,000 ids: about 0.3 ms of this process's CPU per event), which
    both inflated the CPU per event printed and took the cores from the worker measured. The
    text is cast once, in ``unnest``: as ``event_id = ANY($1::text::uuid[])`` the cast (an
    I/O conversion, not folded into a constant) was evaluated for every row of a sequential
    scan, each time parsing every id asked for; that poll's backend took 6.2 of the 7.0 s
    of PostgreSQL CPU this script printed at 200 ev/s (Round 9)."""
    deadline = time.monotonic() + within_s
    found: dict[uuid.UUID, float] = {}
    missing = list(ids)
    asked = "{" + ",".join(map(str, missing)) + "}"
    while True:
        rows = await conn.fetch(
            "SELECT a.event_id, a.applied_at "
            "FROM unnest($1::text::uuid[]) AS w(event_id) "
            "JOIN fu_applied_events a ON a.event_id = w.event_id",
            asked,
        )
        if rows:
            found.update((r[0], r[1].timestamp()) for r in rows)
            missing = [i for i in missing if i not in found]
            asked = "{" + ",".join(map(str, missing)) + "}"
        if not missing or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


def write_profile(profiler: Any, out: Path) -> None:
    import io
    import pstats

    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(150)
    out.write_text(text.getvalue())


async def skip_batch(*_: object, **__: object) -> None:
    """``--worker ack``: the agent's batch, acknowledged without being applied."""


@contextlib.asynccontextmanager
async def worker_part(part: str, settings: FollowupSettings) -> AsyncIterator[None]:
    if part == "off":
        yield
        return
    with contextlib.ExitStack() as patched:
        if part == "ack":
            patched.enter_context(mock.patch.object(worker_module, "handle_batch", skip_batch))
        async with running_worker(settings):
            yield


async def commits(conn: Any) -> int:
    """Transactions committed in the connection's database so far (the statistics other
    backends flushed: each flushes at most once a second while busy, so the figure lags by
    about a second of work)."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(
        await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
    )


async def measure(args: argparse.Namespace, base: Path) -> None:
    import asyncpg

    overrides = (
        {}
        if args.relay_min_interval_s is None
        else {"followup_relay_min_interval_s": args.relay_min_interval_s}
    )
    # The worker's self-check (every reconcile_self_check_interval_s, and at a position jump)
    # reads every event store of the product: intake's is there, empty, as in the stack.
    # Without it, a run past the first periodic check logged the check's failure ("database
    # ... does not exist") with its traceback.
    async with probe_stack(
        base, broker=True, migrated=("followup", "eventstore"), overrides=overrides
    ) as stack:
        settings, server = stack.settings, stack.server
        topic = declare_topics(settings).intake_events.name
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await start_or_close(producer)
        position = 0
        run = uuid.uuid4().hex[:6]

        async def publish(event: RecordedEvent) -> None:
            nonlocal position
            position += 1
            await producer.send(
                topic,
                value=event.model_dump_json().encode(),
                key=event.subject_id.encode(),
                headers=event_headers(event, position),
            )

        conn = await asyncpg.connect(settings.followup_database_url)
        # The watcher's own connection, held open past the measure: its backend's CPU is
        # read, like the polls', and taken out of PostgreSQL's figure.
        watcher_conn = await asyncpg.connect(settings.followup_database_url)
        try:
            async with worker_part(args.worker, settings), contextlib.AsyncExitStack() as watch:
                await publish(registration(0, run))  # warm-up: the agent is assigned
                await asyncio.sleep(3)
                if args.freeze:
                    freeze_batch_heap()
                sent: dict[uuid.UUID, float] = {}
                total = int(args.rate * args.seconds)
                commits0 = await commits(conn)
                STATEMENTS.clear()
                profiler = None
                if args.profile:
                    import cProfile

                    profiler = cProfile.Profile(time.process_time)  # CPU, not waits
                    profiler.enable()
                cpu0, server0 = time.process_time(), server_cpu_seconds(server.pgdata)
                # The bench's own connection (its polls) is not the worker's cost: its backend
                # is read apart and taken out of PostgreSQL's figure.
                backends = (conn.get_server_pid(), watcher_conn.get_server_pid())
                poll0 = sum(map(process_cpu_seconds, backends))
                seen = latency.Watch()  # watched only when the worker applies
                if args.worker == "full":
                    (seen,) = await watch.enter_async_context(
                        latency.watching((watcher_conn, "fu_applied_events"), within_s=120)
                    )
                loop = asyncio.get_running_loop()
                start = loop.time()
                for n in range(1, total + 1):
                    await asyncio.sleep(max(0.0, start + n / args.rate - loop.time()))
                    event = registration(n, run)
                    seen.sent(event.event_id)
                    sent[event.event_id] = time.time()
                    await publish(event)
                if args.worker != "full":
                    await producer.flush()
                    await asyncio.sleep(SETTLE_S)
                    cpu = time.process_time() - cpu0
                    print(
                        f"--worker {args.worker}, {args.rate:.0f} ev/s for {args.seconds:.0f} s: "
                        f"CPU per event, this process {1000 * cpu / total:.2f} ms "
                        f"(a settling wait of {SETTLE_S:.0f} s included); "
                        f"load average {os.getloadavg()[0]:.2f}"
                    )
                    return
                await watch.aclose()  # until every event is visible, at most 120 s
                gave_up = time.time()
                # the rows' timestamps: one read, every event being visible by now
                done = await applied(conn, list(sent), 120)
                cpu = time.process_time() - cpu0
                poll_cpu = sum(map(process_cpu_seconds, backends)) - poll0
                server_cpu = server_cpu_seconds(server.pgdata) - server0 - poll_cpu
                statements = dict(STATEMENTS)
                # The watcher's polls are the bench's, not the worker's: counted apart.
                statements.pop(" ".join(latency.watch_sql("fu_applied_events").split())[:90], 0)
                if profiler is not None:
                    profiler.disable()
                    write_profile(profiler, Path(args.profile))
                # each of the watcher's polls is a transaction of followup's database too
                transactions = await commits(conn) - commits0 - seen.polls
                visible = latency.lag_figures(sent, seen.seen, gave_up)
                rows = latency.lag_figures(sent, done, gave_up)
                print(
                    f"steady {args.rate:.0f} ev/s for {args.seconds:.0f} s: "
                    f"{lag_text(visible, rows, latency.poll_window_p99_ms(seen))}, "
                    f"{rows.missing} not applied; CPU per event: this process "
                    f"{1000 * cpu / total:.2f} ms, PostgreSQL {1000 * server_cpu / total:.2f} ms "
                    f"(the bench's own polls {1000 * poll_cpu / total:.2f} ms apart), "
                    f"{transactions / total:.2f} transactions of followup's database; "
                    f"load average {os.getloadavg()[0]:.2f}"
                )
                if args.statements:
                    # the bench's one read of the rows' timestamps (``applied``) is counted
                    print(
                        f"  {sum(statements.values()) / total:.2f} statements per event "
                        f"(the watcher's {seen.polls} polls apart):"
                    )
                    for sql, count in sorted(statements.items(), key=lambda kv: -kv[1])[:40]:
                        print(f"  {count / total:6.2f}/event  {sql}")
                if args.backlog:
                    backlog = [registration(total + n, run) for n in range(1, args.backlog + 1)]
                    began = time.monotonic()
                    for event in backlog:
                        await publish(event)
                    await producer.flush()
                    await applied(conn, [e.event_id for e in backlog], 300)
                    took = time.monotonic() - began
                    print(
                        f"backlog of {args.backlog} published at once: applied in {took:.1f} s "
                        f"({args.backlog / took:.0f} ev/s, publishing included); "
                        f"load average {os.getloadavg()[0]:.2f}"
                    )
        finally:
            await watcher_conn.close()
            await conn.close()
            await closed(producer)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=250)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--worker", choices=("full", "ack", "off"), default="full")
    parser.add_argument("--relay-min-interval-s", type=float, default=None)
    parser.add_argument("--statements", action="store_true", help="statements per event")
    parser.add_argument("--profile", help="write a cProfile (CPU time) of the steady part here")
    parser.add_argument("--freeze", action="store_true", help="freeze as the worker process")
    args = parser.parse_args()
    if args.statements:
        count_statements()
    return run_in_scratch(measure, args, "bench-followup-steady-")


if __name__ == "__main__":
    sys.exit(main())
