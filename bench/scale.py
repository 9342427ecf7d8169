"""The audit ledger's append and verify rates, the followup rebuild rate, and how the stack's
cost and memory grow with the number of events it holds (docs/performance.md, #12).

- ledger append: the consumer's write path (``PostgresLedger.append``, 500 events per
  transaction, as the audit consumer's fetches give them) into a ledger of its own;
- ledger verify: ``verify_ledger`` over that ledger (every entry's hash and chain link, the
  signed checkpoints);
- rebuild: ``branchline rebuild followup`` (the same function the command runs) replaying the
  event topics into new read models, events per second;
- growth: the stack is filled (``POST /v1/events:batch``) to each step of events; at each step,
  once the audit consumer has caught up: the batch rate, intake CPU per single POST, the
  resident memory (RSS) of every component, and how far the followup worker has got.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench import branchline_measures
from bench.stack import BenchStack, child_pids
from branchline_audit.adapters.database import open_role_pool, prepare_database
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


async def ledger_rates(settings: BranchlineSettings, database_url: str, events: int) -> LedgerRates:
    """Append ``events`` to an empty ledger of its own (database ``database_url``), 500 per
    transaction, then verify it; both as events per second."""
    own = settings.model_copy(update={"audit_database_url": database_url})
    await prepare_database(own)
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
        gc.collect()
        started = time.perf_counter()
        verdict = await verify_ledger(
            audit.ledger,
            audit.checkpoints,
            verifier=audit.signer.verifier(),
            origin=audit.origin,
        )
        verified = time.perf_counter() - started
        if not verdict.ok or verdict.entries != events:
            raise AssertionError(f"the benchmark's ledger did not verify: {verdict}")
        return LedgerRates(events / appended, events / verified)
    finally:
        await pool.close()


async def rebuild_rate(settings: BranchlineSettings) -> tuple[float, int]:
    """``branchline rebuild followup`` from the topics: events replayed per second, and how
    many."""
    from branchline_followup.bootstrap import rebuild

    started = time.perf_counter()
    result = await rebuild(settings)
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


async def audit_caught_up(stack: BenchStack, within_s: float = 300) -> None:
    """Wait (bounded) until the audit ledger holds every event intake stored (the followup
    worker's own events keep arriving while it works off its backlog: a count that stops
    growing would wait for it)."""
    held = await stored_events(stack.settings.intake_database_url)
    deadline = time.monotonic() + within_s
    # The event's column, or its canonical bytes where it is stored once (migration 006).
    sql = (
        "SELECT count(*) FROM audit_ledger WHERE coalesce(event->>'source', "
        "audit_entry_event(canonical, position)->>'source') = 'intake'"
    )
    while time.monotonic() < deadline:
        if await _count(stack.settings.audit_database_url, sql) >= held:
            return
        await asyncio.sleep(1.0)


async def growth_step(stack: BenchStack, events: int, sample: int) -> dict[str, float]:
    """Fill to ``events``, let the audit consumer catch up, then measure at that size. The
    followup worker is not waited for (it can be far slower than the fill): how much of the
    fill it has applied is reported beside its memory."""
    label = step_label(events)
    started = time.perf_counter()
    await fill_to(stack, events)
    figures: dict[str, float] = {f"grow_fill_{label}": time.perf_counter() - started}
    await audit_caught_up(stack)
    port = stack.settings.intake_port
    figures[f"grow_batch_{label}"] = await branchline_measures.batches(
        port, stack.token, max(1000, sample)
    )
    cpu_before = stack.cpu_seconds("intake-api")
    await branchline_measures.single_posts(port, stack.token, sample)
    figures[f"grow_single_cpu_ms_{label}"] = (
        1000 * (stack.cpu_seconds("intake-api") - cpu_before) / sample
    )
    await audit_caught_up(stack)
    for component in COMPONENTS:
        figures[f"rss_{component}_{label}"] = rss_mb(stack, component)
    held = await stored_events(stack.settings.intake_database_url)
    applied = await _count(
        stack.settings.followup_database_url, "SELECT count(*) FROM fu_applied_events"
    )
    # followup also applies its own events (task creations): the share can pass 1.0
    figures[f"grow_followup_applied_{label}"] = applied / max(1, held)
    return figures


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
                f"at {events:,} events: followup worker's applied events / intake's events",
                "ratio",
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
