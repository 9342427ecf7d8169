"""How fast the followup worker applies events, and where its time goes (#12).

Starts an embedded PostgreSQL only (no broker: the Kafka edge is a message list), generates a
history and applies it through the worker's own path (:func:`handle_batch`: decoding, the
batch's one transaction, the projection) in batches of ``--batch``, and prints events per
second, the SQL statements per event (each one round trip to PostgreSQL) and the worker's
Python CPU per event. ``--profile FILE`` samples the run with pyinstrument (FILE: the call
tree, FILE.summary: shares per function, as :mod:`bench.profile_intake` prints them).

    python -m bench.profile_followup [--clients 600]
                                     [--workload history|service-loop|registrations]
                                     [--batch 200] [--profile /tmp/followup.txt] [--sql]
                                     [--freeze [--young 20000]]
                                     [--cprofile /tmp/followup.pstats]

Workloads: ``history`` is tests/integration/followup/harness.py's generate_history (about 14
events per client: registration, KYC, reception journeys, consultations, sales, complaints,
surveys), interleaved by time; ``service-loop`` the same history with corrective actions,
renegotiations and closures after each client's events (:func:`_add_service_loop`);
``--ratings`` adds the sold products' approvals and re-ratings (:func:`_add_ratings`);
``registrations`` is what the benchmark writes (a new client
registered, then a consent of each: one task created per registration).

``--freeze``: the start-up heap frozen as the worker process freezes it once started
(:func:`freeze_batch_heap`: its young collections made less often too), here once the pool
and the projection are built and before the workload is generated: the bench's own messages
are not frozen (they would make the collector's saving look larger than a worker's).

``--cprofile FILE``: the measured batches' CPU time per function (cProfile on
``time.process_time``, as :mod:`bench.profile_rebuild`'s; FILE: pstats, FILE.txt the top
functions).
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import raw_messages, run_in_scratch  # noqa: E402
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork  # noqa: E402
from branchline_followup.application.config import policy_from_settings  # noqa: E402
from branchline_followup.application.projector import Projection  # noqa: E402
from branchline_followup.bootstrap import open_read_model_pool  # noqa: E402
from branchline_followup.entrypoints.worker import handle_batch  # noqa: E402
from branchline_shared.events.envelope import RecordedEvent  # noqa: E402
from branchline_shared.http.startup_heap import (  # noqa: E402
    BATCH_YOUNG_THRESHOLD,
    freeze_batch_heap,
)
from branchline_shared.kafka.consuming import DeadLetters, RawMessage  # noqa: E402

STATEMENTS: collections.Counter[str] = collections.Counter()
PARAMETERS: collections.Counter[str] = collections.Counter()
"""What the counted statements bound: ``bound`` parameters (an ``executemany``'s rows each
bind theirs), of which ``arrays`` are lists (asyncpg checks each of their ``elements`` in
Python before encoding it)."""
TEXTS: set[str] = set()
"""The distinct statement texts sent (each a prepared statement in a connection's cache)."""


class CollectorTime:
    """Time spent in the cyclic garbage collector, per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            took = time.perf_counter() - self._started
            self.seconds[info["generation"]] += took
            self.runs[info["generation"]] += 1
            self.longest = max(self.longest, took)

    def describe(self, events: int) -> str:
        runs = ", ".join(
            f"gen {g}: {self.runs[g]} runs, {1e6 * self.seconds[g] / events:.1f} µs/event"
            for g in range(3)
        )
        return f"{runs}; longest {1000 * self.longest:.1f} ms"


def count_statements() -> None:
    """Count what the connections send (each call one round trip to PostgreSQL)."""
    import asyncpg

    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.Connection, name)

        def counted(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            if args:
                STATEMENTS[" ".join(str(args[0]).split())[:90]] += 1
                TEXTS.add(str(args[0]))
                rows = args[1] if __original.__name__ == "executemany" else [args[1:]]
                for row in rows:
                    _count_parameters(row)
            return __original(self, *args, **kwargs)

        setattr(asyncpg.Connection, name, counted)


def _count_parameters(row: Any) -> None:
    for value in row:
        PARAMETERS["bound"] += 1
        if isinstance(value, list | tuple):
            PARAMETERS["arrays"] += 1
            PARAMETERS["elements"] += len(value)


def _add_service_loop(history: Any) -> None:
    """``service-loop``: the ``history`` and, after each client's last event (in the order of
    its stream: no late arrival, so no re-projection), the D-09 / D-17 facts that history
    lacks: a complaint's corrective actions (planned, most completed), promises of complaints
    and consultations renegotiated, accounts closed (some reopened). About 0.1 of its events
    (#12: the rebuild's writes of these kinds)."""
    import random

    rng = random.Random(11)
    last: dict[str, datetime] = {}
    complaints: dict[str, str] = {}
    consultations: dict[str, str] = {}
    for event in history.events:
        client_id = event.client_id
        last[client_id] = max(last.get(client_id, event.occurred_at), event.occurred_at)
        if event.type == "complaint.received":
            complaints[client_id] = event.data["complaint_id"]
        elif event.type == "consultation.opened":
            consultations[client_id] = event.data["consultation_id"]
    for client_id, at in last.items():
        step = iter(at + timedelta(minutes=n) for n in range(1, 20))
        promised = (at + timedelta(days=5)).isoformat()
        renegotiation = {
            "promised_by": promised,
            "reason": "awaiting_third_party",
            "alternative": "s",
            "client_told": True,
        }
        complaint = complaints.get(client_id)
        if complaint is not None:
            for n in range(rng.choice((1, 1, 2))):
                action = {"complaint_id": complaint, "action_id": f"CA-{n}"}
                history.add(
                    "complaint.corrective_action_planned",
                    client_id,
                    next(step),
                    {
                        **action,
                        "root_cause": rng.choice(["process", "staff", "system"]),
                        "action_kind": "process_change",
                        "owner_id": "sup-1",
                        "due_at": (at + timedelta(days=10)).isoformat(),
                    },
                )
                if rng.random() < 0.7:
                    history.add(
                        "complaint.corrective_action_completed", client_id, next(step), action
                    )
            if rng.random() < 0.5:
                history.add(
                    "complaint.promise_renegotiated",
                    client_id,
                    next(step),
                    {"complaint_id": complaint, **renegotiation},
                )
        consultation = consultations.get(client_id)
        if consultation is not None and rng.random() < 0.4:
            history.add(
                "consultation.promise_renegotiated",
                client_id,
                next(step),
                {"consultation_id": consultation, **renegotiation},
            )
        if rng.random() < 0.15:
            history.add("client.account_closed", client_id, next(step), {"reason": "relocation"})
            if rng.random() < 0.3:
                history.add(
                    "client.account_reopened", client_id, next(step), {"reason": "client_request"}
                )


def _add_ratings(history: Any, start: datetime, end: datetime) -> None:
    """``--ratings``: the products the history sells (``P-1`` .. ``P-9``) approved before its
    first event and each re-rated twice within it (D-13, D-15: each sale reads its product's
    ratings, each re-rating re-rates the holders and may make their reviews due)."""
    import random

    from tests.support.events import ADMIN, recorded_event

    rng = random.Random(13)
    span = end - start
    for n in range(1, 10):
        product_id = f"P-{n}"
        approved = {
            "name": "Fund",
            "category": "fund",
            "risk": f"R{rng.randint(1, 3)}",
            "eligible_client_types": ["individual", "corporate"],
        }
        at = start - timedelta(days=1)
        history.events.append(
            recorded_event("product.approved", approved, at=at, product_id=product_id, actor=ADMIN)
        )
        for version in (2, 3):
            at = start + span * rng.random()
            rerated = {
                "risk": f"R{rng.randint(1, 5)}",
                "effective_at": at.isoformat(),
                "reason": "equity share changed",
            }
            history.events.append(
                recorded_event(
                    "product.rerated",
                    rerated,
                    at=at,
                    product_id=product_id,
                    version=version,
                    actor=ADMIN,
                )
            )


def workload(kind: str, clients: int, *, ratings: bool = False) -> list[RecordedEvent]:
    from tests.integration.followup.harness import History, generate_history

    end = datetime(2026, 11, 20, tzinfo=UTC)
    if kind in ("history", "service-loop"):
        span = timedelta(days=30)
        history = generate_history(clients, end=end, span=span)
        if kind == "service-loop":
            _add_service_loop(history)
        if ratings:
            _add_ratings(history, end - span, end)
    else:
        history = History()
        for n in range(clients):
            history.registered(f"C-{n}", end - timedelta(seconds=clients - n))
        for n in range(clients):
            history.add("client.consent_granted", f"C-{n}", end, {"purposes": ["service"]})
    return sorted(history.events, key=lambda e: e.recorded_at)


class CountedDeadLetters(DeadLetters):
    """Counts what would be dead-lettered instead of publishing it (no broker here)."""

    def __init__(self) -> None:  # no producer: ``send`` below is all that is called
        self.sent = 0

    async def send(self, raw: RawMessage, reason: str) -> None:
        self.sent += 1


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base, migrated=("followup",)) as stack:
        server, settings = stack.server, stack.settings
        pool = await open_read_model_pool(settings)
        units = PostgresUnitsOfWork(pool)
        # As the running worker: task creations recorded in followup's store and outbox.
        projection = Projection(policy_from_settings(settings), task_creations_topic="bench")
        if args.freeze:
            freeze_batch_heap(args.young)
        raws = raw_messages(workload(args.workload, args.clients, ratings=args.ratings))
        dead = CountedDeadLetters()
        warm, rest = raws[: args.batch], raws[args.batch :]
        await handle_batch(warm, units, dead, projection)  # imports, prepared statements
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001, async_mode="enabled")
            profiler.start()
        cpu_profiler = None
        if args.cprofile:
            import cProfile

            cpu_profiler = cProfile.Profile(time.process_time)
            cpu_profiler.enable()
        STATEMENTS.clear()
        PARAMETERS.clear()
        TEXTS.clear()
        collector = CollectorTime()
        gc.callbacks.append(collector)
        server_started = server_cpu_seconds(server.pgdata)
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(0, len(rest), args.batch):
            await handle_batch(rest[i : i + args.batch], units, dead, projection)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        server_cpu = server_cpu_seconds(server.pgdata) - server_started
        gc.callbacks.remove(collector)
        statements = sum(STATEMENTS.values())
        if profiler is not None:
            profiler.stop()
            write_profile(profiler, Path(args.profile))
        if cpu_profiler is not None:
            from bench.profile_rebuild import write_cpu_profile

            cpu_profiler.disable()
            write_cpu_profile(cpu_profiler, Path(args.cprofile))
        tasks = await pool.fetchval("SELECT count(*) FROM fu_tasks")
        await pool.close()
    n = len(rest)
    print(
        f"{args.workload}{' (frozen start-up heap)' if args.freeze else ''}: "
        f"{n} events in batches of {args.batch}: {n / wall:.0f} ev/s, "
        f"{statements / n:.2f} statements/event ({len(TEXTS)} texts), "
        f"{1e6 * cpu / n:.1f} µs Python CPU/event "
        f"({100 * cpu / wall:.0f}% of the wall time), {1e6 * server_cpu / n:.1f} µs PostgreSQL "
        f"CPU/event; {tasks} tasks, {dead.sent} dead-lettered; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"  collector: {collector.describe(n)}; {gc.get_freeze_count()} objects frozen")
    batches = -(-n // args.batch)
    print(
        f"  per batch: {statements / batches:.2f} statements, {PARAMETERS['bound'] / batches:.1f} "
        f"parameters bound, of which {PARAMETERS['arrays'] / batches:.1f} arrays of "
        f"{PARAMETERS['elements'] / batches:.0f} elements"
    )
    if args.sql:
        for sql, count in STATEMENTS.most_common(25):
            print(f"  {count / n:6.3f}/event {count / batches:6.2f}/batch  {sql}")


def server_cpu_seconds(pgdata: Path) -> float:
    """CPU used so far by the PostgreSQL server: the postmaster, its live backends and
    background workers, and those that have exited (a pool replaces a connection after
    50,000 queries), which the postmaster's cutime/cstime count once it reaped them."""
    from bench.stack import child_pids, process_cpu_seconds

    postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return reaped + sum(process_cpu_seconds(p) for p in [postmaster, *child_pids(postmaster)])


def write_profile(profiler: Any, out: Path) -> None:
    from bench.profile_intake import collapsed_stacks, summarise

    out.write_text(profiler.output_text(unicode=False, color=False))
    session = out.with_suffix(".pyisession")
    profiler.last_session.save(session)
    out.with_suffix(".summary.txt").write_text(summarise(collapsed_stacks(session), top=40))
    print(f"profile: {out} (shares: {out.with_suffix('.summary.txt')})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=600)
    parser.add_argument(
        "--workload", choices=("history", "service-loop", "registrations"), default="history"
    )
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--profile", help="write a pyinstrument profile here")
    parser.add_argument("--sql", action="store_true", help="statements per event by text")
    parser.add_argument(
        "--ratings",
        action="store_true",
        help="the sold products approved and re-rated too (history, service-loop)",
    )
    parser.add_argument("--freeze", action="store_true", help="freeze the start-up heap")
    parser.add_argument(
        "--young",
        type=int,
        default=BATCH_YOUNG_THRESHOLD,
        help="with --freeze: the young-generation threshold (the worker's "
        "followup_worker_gc_young_threshold)",
    )
    parser.add_argument("--cprofile", help="write a cProfile (CPU time) of the batches here")
    args = parser.parse_args()
    count_statements()
    return run_in_scratch(measure, args, "bench-followup-")


if __name__ == "__main__":
    sys.exit(main())
