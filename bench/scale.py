"""The audit ledger's append and verify rates, the followup rebuild rate, and how the stack's
cost and memory grow with the number of events it holds (docs/performance.md, #12).

- ledger append: the consumer's write path (``PostgresLedger.append``, 500 events per
  transaction, as the audit consumer's fetches give them) into a ledger of its own;
- ledger verify: ``verify_ledger`` over that ledger (every entry's hash and chain link, the
  signed checkpoints), in one pass; then again in 2 processes, as ``branchline audit verify
  --processes 2`` does (two position ranges, the fork server started for it and stopped
  after, as each command pays its start);
- rebuild: ``branchline rebuild followup`` (the same function the command runs) replaying the
  event topics into new read models, events per second; then the same rebuild again with
  ``--processes 2`` (its main phase in two processes, each the clients of its share);
- growth: the stack is filled (``POST /v1/events:batch``) to each step of events; at each step:
  how far the followup worker had got when the fill ended, how long both consumers then took
  to hold every event, and once they did, the batch rate, intake CPU per single POST and the
  resident memory (RSS) of every component. ``python -m bench.growth_pairs`` measures the
  write path with the consumers behind, paused and caught up, alternately.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import branchline_measures
from bench.stack import BenchStack, child_pids
from branchline_audit.adapters.database import open_role_pool
from branchline_audit.adapters.segments import ProcessSegmentVerifiers
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.bootstrap import audit_context
from branchline_shared.clock import SystemClock
from branchline_shared.settings import BranchlineSettings

LEDGER_BATCH = 500  # the audit consumer's max_records per fetch

# Components whose memory is reported (as `branchline dev` names them).
COMPONENTS = (
    "intake-api",
    "followup-api",
    "audit-api",
    "followup-worker",
    "audit-consumer",
)


def step_label(events: int) -> str:
    if events >= 1_000_000 and events % 1_000_000 == 0:
        return f"{events // 1_000_000}M"
    if events >= 1000 and events % 1000 == 0:
        return f"{events // 1000}k"
    return str(events)


@dataclass(frozen=True)
class LedgerRates:
    append_per_s: float
    verify_per_s: float
    verify_p2_per_s: float
    """The same ledger verified right after in 2 processes (``--processes 2``, #12)."""


async def ledger_rates(settings: BranchlineSettings, database_url: str, events: int) -> LedgerRates:
    """Append ``events`` to an empty ledger of its own (database ``database_url``, migrated as
    audit's by the caller: ``BenchStack.database(name, migrated="audit")``), 500 per
    transaction, then verify it; both as events per second."""
    own = settings.model_copy(update={"audit_database_url": database_url})
    pool = await open_role_pool(own, own.audit_db_writer_role, min_size=1, max_size=2)
    try:
        audit = audit_context(own, pool, SystemClock())
        run = uuid.uuid4().hex[:8]
        envelopes = [
            branchline_measures.recorded(i, run, datetime.now(UTC)).model_dump(mode="json")
            for i in range(events)
        ]
        gc.collect()  # neither part billed for the harness's heap (profile_ledger.settle_heap)
        started = time.perf_counter()
        for first in range(0, events, LEDGER_BATCH):
            await audit.ledger.append(
                envelopes[first : first + LEDGER_BATCH], now=datetime.now(UTC)
            )
        appended = time.perf_counter() - started
        verified = await _verify_seconds(audit, events, processes=1, settings=own)
        verified_p2 = await _verify_seconds(audit, events, processes=2, settings=own)
        return LedgerRates(events / appended, events / verified, events / verified_p2)
    finally:
        await pool.close()


async def _verify_seconds(
    audit: Any, events: int, *, processes: int, settings: BranchlineSettings
) -> float:
    """One ``verify_ledger`` of the ledger, in one pass (``processes`` 1) or in that many
    processes as ``branchline audit verify --processes N`` (a fork server of its own, stopped
    after: the next one pays its start again, as every command does); its seconds."""
    segments = (
        None
        if processes == 1
        else ProcessSegmentVerifiers.configured(
            settings.audit_database_url,
            settings.audit_db_writer_role,
            processes=processes,
            min_entries=settings.audit_verify_parallel_min_entries,
        )
    )
    gc.collect()
    started = time.perf_counter()
    try:
        verdict = await verify_ledger(
            audit.ledger,
            audit.checkpoints,
            verifier=audit.signer.verifier(),
            origin=audit.origin,
            segments=segments,
        )
        verified = time.perf_counter() - started
    finally:
        if segments is not None:
            _stop_forkserver()
    if not verdict.ok or verdict.entries != events:
        raise AssertionError(f"the benchmark's ledger did not verify: {verdict}")
    return verified


def _stop_forkserver() -> None:
    """The fork server a parallel verify started, stopped (bench.profile_ledger --cold)."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # type: ignore[attr-defined]


async def rebuild_rate(settings: BranchlineSettings, processes: int = 1) -> tuple[float, int]:
    """``branchline rebuild followup [--processes N]`` from the topics: events replayed per
    second, and how many."""
    from branchline_followup.bootstrap import rebuild

    started = time.perf_counter()
    # as the command runs it
    result = await rebuild(settings, settle_heap=True, processes=processes)
    elapsed = time.perf_counter() - started
    if result.total <= 0:
        raise AssertionError("the rebuild replayed nothing")
    return result.total / elapsed, result.total


def rss_mb(stack: BenchStack, component: str) -> float:
    """Resident memory of a component: its processes and their children (forked intake
    processes), from /proc (Linux), in MB."""
    pids = list(stack.pids.get(component, []))
    for pid in list(pids):
        pids.extend(child_pids(pid))
    total_kb = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


async def stored_events(intake_dsn: str) -> int:
    conn = await asyncpg.connect(intake_dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM es_events"))
    finally:
        await conn.close()


async def fill_to(stack: BenchStack, events: int, chunk: int = 10_000) -> None:
    """Batches of 1,000 new clients until intake's store holds ``events``."""
    port = stack.settings.intake_port
    while (have := await stored_events(stack.settings.intake_database_url)) < events:
        await branchline_measures.batches(port, stack.token, min(chunk, events - have))


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


CATCH_UP_LIMIT_S = 900.0
"""How long a growth step waits for the consumers to hold every event intake stored (the
followup worker works off the fill's backlog; at 1,000,000 events that can take minutes)."""

# An entry's source as reconcile reads it: the store position recorded with it, else the
# event's column, else its canonical bytes (the event stored once, migration 006): the
# bytes are parsed only for the few entries without a recorded position.
AUDIT_HELD = (
    "SELECT count(*) FROM audit_ledger l LEFT JOIN audit_source_positions p USING (event_id) "
    "WHERE coalesce(p.source, l.event->>'source', "
    "audit_entry_event(l.canonical, l.position)->>'source') = 'intake'"
)
FOLLOWUP_HELD = "SELECT count(*) FROM fu_applied_events WHERE source = 'intake'"


async def consumers_hold(sql_by_dsn: list[tuple[str, str]], held: int) -> bool:
    for dsn, sql in sql_by_dsn:
        if await _count(dsn, sql) < held:
            return False
    return True


async def caught_up(
    stack: BenchStack, *, followup: bool, within_s: float = CATCH_UP_LIMIT_S
) -> bool:
    """Wait (bounded) until the audit ledger, and with ``followup`` the followup worker's
    applied events, hold every event intake stored; whether they did. Only intake's events
    are counted: the followup worker's own events keep arriving while it works off its
    backlog, and a count that stops growing would wait for them."""
    held = await stored_events(stack.settings.intake_database_url)
    queries = [(stack.settings.audit_database_url, AUDIT_HELD)]
    if followup:
        queries.append((stack.settings.followup_database_url, FOLLOWUP_HELD))
    deadline = time.monotonic() + within_s
    while True:
        if await consumers_hold(queries, held):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(1.0)


async def audit_caught_up(stack: BenchStack, within_s: float = 300) -> None:
    """Wait (bounded) until the audit ledger holds every event intake stored."""
    await caught_up(stack, followup=False, within_s=within_s)


async def followup_share(stack: BenchStack) -> float:
    """The followup worker's applied intake events over intake's stored events."""
    held = await stored_events(stack.settings.intake_database_url)
    applied = await _count(stack.settings.followup_database_url, FOLLOWUP_HELD)
    return applied / max(1, held)


async def write_path(
    stack: BenchStack, sample: int, batch_events: int | None = None
) -> tuple[float, float]:
    """The batch rate (``batch_events`` events, by default ``max(3000, sample)``, 1,000 per
    batch) and intake's CPU per single POST (``sample`` POSTs, 64 connections), measured now."""
    port = stack.settings.intake_port
    batched = max(3000, sample) if batch_events is None else batch_events
    rate = await branchline_measures.batches(port, stack.token, batched)
    cpu_before = stack.cpu_seconds("intake-api")
    await branchline_measures.single_posts(port, stack.token, sample)
    return rate, 1000 * (stack.cpu_seconds("intake-api") - cpu_before) / sample


async def growth_step(
    stack: BenchStack,
    events: int,
    sample: int,
    warnings: list[str] | None = None,
    batch_events: int | None = None,
) -> dict[str, float]:
    """Fill to ``events``; note how far the followup worker has got once the audit consumer
    holds the fill; let both consumers catch up (timed from the fill's end, bounded); then
    measure the write path at that size (``batch_events``: :func:`write_path`'s), and the
    memory at rest.

    The write path is read with the consumers caught up, alike at every step. Up to Round 8
    it was read while the followup worker still worked off the fill's backlog on the same two
    cores, so a step's figure also measured how hard the worker worked at that moment
    (docs/performance.md, Round 9: the growth step's write path)."""
    label = step_label(events)
    started = time.perf_counter()
    await fill_to(stack, events)
    figures: dict[str, float] = {f"grow_fill_{label}": time.perf_counter() - started}
    started = time.perf_counter()
    # Where the worker is once the audit consumer holds the fill: the point Rounds 5-8 read
    # it at, so the share stays comparable (followup's own events are not counted).
    await audit_caught_up(stack)
    figures[f"grow_followup_applied_{label}"] = await followup_share(stack)
    if await caught_up(stack, followup=True):
        figures[f"grow_catchup_{label}"] = time.perf_counter() - started
    elif warnings is not None:
        warnings.append(
            f"growth at {events:,}: the consumers had not caught up after "
            f"{CATCH_UP_LIMIT_S:.0f} s; the write path was measured beside their backlog"
        )
    figures[f"grow_batch_{label}"], figures[f"grow_single_cpu_ms_{label}"] = await write_path(
        stack, sample, batch_events
    )
    # Memory at rest, as the 1,000,000-event runs read it: both consumers hold the write
    # path's events and have been idle one trim interval (an idle consumer that worked off a
    # burst gives its free heap back within one). Read as soon as the audit consumer held
    # them, the followup worker was often still applying them, mid-batch and not yet trimmed:
    # 5-21 MB above its resting RSS (Round 12, "the young-generation threshold and its
    # resident memory").
    if await caught_up(stack, followup=True):
        await asyncio.sleep(stack.settings.malloc_trim_interval_s + REST_MARGIN_S)
    for component in COMPONENTS:
        figures[f"rss_{component}_{label}"] = rss_mb(stack, component)
    return figures


REST_MARGIN_S = 2.0
"""Beyond one trim interval, for the consumer's next empty fetch to come round."""


def growth_measures(steps: tuple[int, ...]) -> list[tuple[str, str, str]]:
    """(key, title, unit) of the growth measures of ``steps``, in table order."""
    rows: list[tuple[str, str, str]] = []
    for events in steps:
        label = step_label(events)
        rows += [
            (f"grow_batch_{label}", f"at {events:,} events: POST /v1/events:batch", "ev/s"),
            (
                f"grow_single_cpu_ms_{label}",
                f"at {events:,} events: intake CPU per single POST",
                "ms",
            ),
            (f"grow_fill_{label}", f"at {events:,} events: filling the stack to it", "s"),
            (
                f"grow_followup_applied_{label}",
                f"at {events:,} events: followup worker's applied / intake's events",
                "ratio",
            ),
            (
                f"grow_catchup_{label}",
                f"at {events:,} events: both consumers holding the fill, after it",
                "s",
            ),
        ]
        rows += [
            (f"rss_{c}_{label}", f"at {events:,} events: RSS of the {c}", "MB") for c in COMPONENTS
        ]
    return rows


def growth_ratios(steps: tuple[int, ...]) -> dict[str, list[str]]:
    """Each later step's figure as a ratio to the first step's (how the cost grows)."""
    if len(steps) < 2:
        return {}
    first = step_label(steps[0])
    ratios: dict[str, list[str]] = {}
    for events in steps[1:]:
        label = step_label(events)
        for name in ("grow_batch", "grow_single_cpu_ms", *[f"rss_{c}" for c in COMPONENTS]):
            ratios[f"{name}_{label}"] = [f"{name}_{first}"]
    return ratios
