"""Branchline's benchmark: one command (`make bench`), its own embedded stack, and every
Branchline figure as a ratio to baselines measured in the same run on the same machine (a
shared 2-core box is noisy; ratios taken side by side are what mean something).

    python -m bench.run [--profile smoke|standard|full] [--repeat N] [--out FILE]
                        [--steady-rate N]

Baselines: raw asyncpg COPY (1,000 per transaction), raw asyncpg one event per transaction
from 64 tasks, raw aiokafka produce, and the peer library `eventsourcing` (PostgreSQL, psycopg)
one event per save from 8 threads (database functions off and on) and 500 events per save.
Each measure is repeated; the table shows the median and the min-max, and each ratio is
taken within one repetition (then summarised), so both sides saw the same machine load.
Then, once, on a second stack started empty: how cost and memory grow as the stack holds
more events (bench/scale.py; the `full` profile goes to 1,000,000 events). Each figure with
a target shows it beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench import baselines, branchline_measures, latency, peer, scale  # noqa: E402
from bench.environment import machine  # noqa: E402
from bench.intake_split import ConnectionSplit, split_entries, split_text  # noqa: E402
from bench.loadgen import Latencies  # noqa: E402
from bench.stack import BenchStack, running_stack  # noqa: E402

console = Console(highlight=False, width=150)


@dataclass(frozen=True)
class Profile:
    name: str
    repeat: int
    singles: int  # POST /v1/events, 64 connections
    batch_events: int  # POST /v1/events:batch, 1,000 per batch
    raw_events: int  # raw COPY, raw one-per-transaction, raw produce, relay
    peer_events: int  # eventsourcing one per save
    peer_batch_events: int  # eventsourcing 500 per save
    long_history: int  # a client with this many events vs one with 10
    latency_s: float  # how long the steady open-loop load runs
    ledger_events: int  # appended to a ledger of its own, then verified
    growth_steps: tuple[int, ...]  # events the stack holds when its cost and memory are read
    growth_sample: int  # single POSTs (and batch events) measured at each step
    drain_events: int = 5000  # the backlog each consumer's drain capacity is read on
    # How long the consumers' applied counts must stand still before a measure counts them
    # caught up (bench.latency.drain's quiet period; five times in a repetition).
    settle_quiet_s: float = 5.0
    # The growth step's batch measure (bench.scale.write_path); None: its default floor of
    # 3,000 events, which the smoke's rebuild then replays too.
    growth_batch_events: int | None = None


PROFILES = {
    # What `make test` runs: every measure once, small, to prove the benchmark still runs.
    # Its settling is short (#12): 5 s of standing still five times was a quarter of the
    # smoke's run, and its figures are not read (a measure beside a backlog still runs).
    # Its sizes are the least that still drives every code path (Round 38, #12): 320 single
    # POSTs still give each of the 64 connections several requests (the split, the resends,
    # the remembered clients' second events), 1,000 events are one full batch and two ledger
    # transactions, 2 s of steady load still spans several WAL samples, and the growth step's
    # batch measure is one batch of 1,000 (not 3,000, then replayed twice by the rebuilds).
    "smoke": Profile(
        "smoke", 1, 320, 1000, 1000, 400, 500, 500, 2.0, 1000, (1000,), 160, 1000, 1.0, 1000
    ),
    "standard": Profile(
        "standard",
        3,
        3200,
        10_000,
        10_000,
        2000,
        10_000,
        10_000,
        20.0,
        10_000,
        (10_000, 100_000),
        1280,
    ),
    # Everything of `standard`, and the stack filled to 1,000,000 events (about an hour).
    "full": Profile(
        "full",
        3,
        3200,
        10_000,
        10_000,
        2000,
        10_000,
        10_000,
        20.0,
        100_000,
        (10_000, 100_000, 1_000_000),
        1280,
    ),
}

BRANCH_SYSTEMS = 16
"""Branch systems (tokens) posting the second single-POST measure."""

INTAKE_DATABASE = "branchline_intake"
"""The stack's intake database (``bench.stack``), whose errors the server's log names."""

RESEND_SHARE = 0.05
"""The share of resends in ``bl_ids16_resend5`` (``bench.branchline_measures.with_resends``):
branch systems that resend after timeouts (Round 26, #12)."""

EXISTING_CLIENTS = 4
"""Clients per connection the existing-client measure posts to (64 connections: 256 clients,
registered first, untimed): each client gets several events, so after its first the
decider remembers it and the remembered-client write (one statement) is what is measured."""

# (key, title, unit); the order of the table.
MEASURES = [
    ("raw_copy", "raw asyncpg COPY, 1,000 per transaction", "ev/s"),
    ("raw_tx64", "raw asyncpg, one event per transaction, 64 tasks", "ev/s"),
    ("peer_8t", "eventsourcing, one per save, 8 threads", "ev/s"),
    ("peer_8t_fn", "eventsourcing, same, database functions on", "ev/s"),
    ("peer_500", "eventsourcing, 500 per save", "ev/s"),
    ("raw_produce", "raw aiokafka produce, acks=all", "ev/s"),
    ("bl_single", "Branchline POST /v1/events, 64 connections", "ev/s"),
    ("bl_single_p50", "  its p50 latency", "ms"),
    ("bl_single_p99", "  its p99 latency", "ms"),
    ("bl_single_cpu_ms", "  intake CPU per event (all intake processes)", "ms"),
    ("bl_single_group", "  events per group commit (mean, all processes)", "events"),
    (
        "bl_single16",
        "Branchline POST /v1/events, 64 connections, {branch_systems} branch systems' tokens",
        "ev/s",
    ),
    ("bl_single16_p99", "  its p99 latency", "ms"),
    ("bl_single16_cpu_ms", "  intake CPU per event (all intake processes)", "ms"),
    (
        "bl_ids16",
        "Branchline POST /v1/events, 64 connections, {branch_systems} branch systems' tokens,"
        " each event with its own event_id",
        "ev/s",
    ),
    ("bl_ids16_p99", "  its p99 latency", "ms"),
    ("bl_ids16_cpu_ms", "  intake CPU per event (all intake processes)", "ms"),
    ("bl_ids16_group", "  events per group commit (mean, all processes)", "events"),
    (
        "bl_ids16_id_order_reruns",
        "  transactions run again after a write out of the id order met a lock (all processes)",
        "times",
    ),
    ("bl_ids16_lock_cycle_reruns", "  transactions run again after a deadlock", "times"),
    (
        "bl_ids16_resend5",
        "Branchline POST /v1/events, the same with ids, {resend_percent}% of them resends",
        "ev/s",
    ),
    ("bl_ids16_resend5_p99", "  its p99 latency", "ms"),
    ("bl_ids16_resend5_cpu_ms", "  intake CPU per event (all intake processes)", "ms"),
    (
        "bl_ids16_resend5_unique_violations",
        "  guessed statements refused by a unique index (all processes)",
        "times",
    ),
    (
        "bl_existing",
        "Branchline POST /v1/events, 64 connections, consents to {existing_clients} clients"
        " per connection that have history",
        "ev/s",
    ),
    ("bl_existing_p99", "  its p99 latency", "ms"),
    ("bl_existing_cpu_ms", "  intake CPU per event (all intake processes)", "ms"),
    ("bl_batch", "Branchline POST /v1/events:batch of 1,000", "ev/s"),
    ("bl_post_h10", "Branchline one POST, client with 10 events (median)", "ms"),
    ("bl_post_hlong", "Branchline one POST, client with {long_history:,} events (median)", "ms"),
    ("bl_relay", "Branchline outbox relay to Kafka", "ev/s"),
    ("drain_followup", "followup worker: catching up after the throughput measures", "s"),
    ("drain_audit", "audit consumer: catching up after the throughput measures", "s"),
    ("vacuum_before_steady", "VACUUM (ANALYZE) of intake, followup, audit before it", "s"),
    ("e2e_offered", "steady open-loop load: {steady_rule}", "ev/s"),
    ("e2e_http_p99", "  its POST p99 (from the scheduled send)", "ms"),
    # Since Round 16 the target's figures are exact: the commit of the row's transaction
    # (bench/latency.py); before, they were the pollers' (now e2e_*_seen_*), late by a poll.
    ("e2e_followup_p50", "  accepted -> committed in the followup read model, p50", "ms"),
    ("e2e_followup_p99", "  accepted -> committed in the followup read model, p99", "ms"),
    ("e2e_audit_p50", "  accepted -> committed in the audit trail, p50", "ms"),
    ("e2e_audit_p99", "  accepted -> committed in the audit trail, p99", "ms"),
    ("e2e_followup_seen_p50", "  accepted -> seen by the followup poller, p50", "ms"),
    ("e2e_followup_seen_p99", "  accepted -> seen by the followup poller, p99", "ms"),
    ("e2e_audit_seen_p50", "  accepted -> seen by the audit poller, p50", "ms"),
    ("e2e_audit_seen_p99", "  accepted -> seen by the audit poller, p99", "ms"),
    ("e2e_poll_window_p99", "  how late a poll can see a commit, p99 of the poll windows", "ms"),
    ("e2e_audit_poll_window_p99", "  the same, the audit trail's poller alone", "ms"),
    (
        "e2e_followup_row_p99",
        "  accepted -> the row's applied_at (its transaction's start), p99",
        "ms",
    ),
    ("e2e_audit_row_p99", "  accepted -> the entry's appended_at (before its write), p99", "ms"),
    # The commit figures are early by the commit's WAL flush: its cost during the load bounds
    # that (bench/latency.py, WalFlushes).
    ("e2e_wal_flush_ms", "  a WAL flush during it (write + fsync time per fsync), mean", "ms"),
    ("e2e_wal_flush_worst_ms", "  the same, the worst second's mean", "ms"),
    ("e2e_worker_cpu_us", "  the followup worker's CPU per event of it", "us"),
    ("e2e_followup_fetch_wait_ms", "  the followup worker's fetch wait after it", "ms"),
    ("e2e_followup_fetch_wait_raises", "  times it was raised during it", "times"),
    ("e2e_audit_fetch_wait_ms", "  the audit consumer's fetch wait after it", "ms"),
    ("e2e_audit_fetch_wait_raises", "  times it was raised during it", "times"),
    ("e2e_broker_cpu_us", "  the broker's CPU per event of it (grows with its log: tansu)", "us"),
    (
        "drain_capacity_followup",
        "followup worker: drain capacity, a backlog of {drain_events:,} with intake idle",
        "ev/s",
    ),
    ("drain_capacity_audit", "audit consumer: drain capacity, the same backlog", "ev/s"),
    (
        "ledger_append",
        "audit ledger append, 500 per transaction ({ledger_events:,} events)",
        "ev/s",
    ),
    ("ledger_verify", "audit ledger verify (the same ledger)", "ev/s"),
    (
        "ledger_verify_p2",
        "  the same verify in 2 processes (audit verify --processes 2, right after it)",
        "ev/s",
    ),
    ("rebuild", "branchline rebuild followup (from the topics, at the first growth step)", "ev/s"),
    ("rebuild_events", "  events it replayed", "events"),
    ("rebuild_p2", "  the same rebuild in 2 processes (--processes 2, right after it)", "ev/s"),
]

# Branchline figure -> the baselines it is compared with (ratios within one repetition).
RATIOS = {
    # above 1.0x the steady load offers more than the consumer drains even on an idle stack
    "e2e_offered": ["drain_capacity_followup", "drain_capacity_audit"],
    "bl_single": ["raw_tx64", "peer_8t", "peer_8t_fn", "raw_copy"],
    "bl_single16": ["raw_tx64", "peer_8t_fn", "bl_single"],
    "bl_ids16": ["raw_tx64", "bl_single16"],
    "bl_ids16_resend5": ["bl_ids16"],
    "bl_existing": ["raw_tx64", "peer_8t_fn", "bl_single"],
    "bl_batch": ["raw_copy", "peer_500"],
    "bl_relay": ["raw_produce"],
    "bl_post_hlong": ["bl_post_h10"],
    "ledger_append": ["raw_copy"],
    "ledger_verify": ["raw_copy"],
    "ledger_verify_p2": ["raw_copy", "ledger_verify"],
    "rebuild": ["raw_copy"],
    "rebuild_p2": ["raw_copy", "rebuild"],
    "raw_tx64": ["raw_copy"],
    "peer_8t": ["raw_copy"],
    "peer_8t_fn": ["raw_copy"],
    "peer_500": ["raw_copy"],
}


# What issue #12 asks of each figure, shown beside it (the targets are ratios in one run).
TARGETS = {
    "bl_single": ">= 1.0x raw_tx64, >= 2x peer_8t_fn",
    "bl_single_p99": "<= 50 ms",
    "bl_batch": ">= 0.35x raw_copy, >= 1.2x peer_500",
    "e2e_followup_p99": "<= 300 ms",
    "e2e_audit_p99": "<= 300 ms",
    "bl_post_hlong": "1.0x +- 0.2 bl_post_h10",
    "ledger_append": ">= 0.5x raw_copy",
    "ledger_verify": ">= 5x raw_copy",
    "rebuild": ">= 0.5x raw_copy",
}
RSS_TARGET = "<= 300 MB, flat"


def target_of(key: str) -> str:
    if key.startswith("rss_"):
        return RSS_TARGET
    if key.startswith(("grow_batch_", "grow_single_cpu_ms_")):
        return "flat (1.0x the first step)"
    return TARGETS.get(key, "")


async def create_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


HALF_PEAK_RULE = "half the first repetition's single-POST peak, the same in every repetition"


@dataclass
class SteadyRate:
    """The steady load's rate, fixed for the whole run (#12): half the first repetition's
    single-POST peak. Each repetition at half its own peak ran at rates 20-45 % apart
    (335-396, 395-579 ev/s), and latencies at different rates do not compare.

    ``given`` (``--steady-rate``): a rate chosen before the run, the same in every run, so
    that two runs (two codes) offer their consumers the same load: half of each run's own peak
    offered Round 19's runs 1,179-1,565 ev/s, and their followup lags did not compare."""

    per_s: float | None = None
    given: bool = False

    @classmethod
    def of(cls, per_s: float | None) -> SteadyRate:
        if per_s is None:
            return cls()
        if per_s <= 0:
            raise ValueError(f"a steady rate must be above 0 ev/s, not {per_s}")
        return cls(per_s=per_s, given=True)

    def fix(self, peak_per_s: float) -> float:
        """The rate: set from the first peak given, the same for every later one (a given
        rate whatever the peak)."""
        if self.per_s is None:
            self.per_s = max(5.0, peak_per_s / 2)
        return self.per_s

    @property
    def rule(self) -> str:
        if self.given:
            return "fixed by --steady-rate, the same in every repetition"
        return HALF_PEAK_RULE


Measure = Callable[[str, Callable[[], Awaitable[float]]], Awaitable[None]]


async def settle(stack: BenchStack, p: Profile) -> dict[str, float]:
    """Wait until the followup worker and the audit consumer caught up (their counts stood
    still ``p.settle_quiet_s``); how long each took (bench.latency.drain)."""
    return await latency.drain(
        stack.settings.followup_database_url,
        stack.settings.audit_database_url,
        quiet_s=p.settle_quiet_s,
    )


def measurer(figures: dict[str, float], p: Profile, r: int) -> Measure:
    """Runs a measure of repetition ``r``, keeps its figure under its key, prints both."""

    async def measure(key: str, run: Callable[[], Awaitable[float]]) -> None:
        console.print(f"  [{r + 1}/{p.repeat}] {key} ...", end="")
        started = time.perf_counter()
        figures[key] = await run()
        console.print(f" {figures[key]:,.1f} ({time.perf_counter() - started:.1f}s)")

    return measure


async def one_repetition(
    stack: BenchStack, p: Profile, r: int, warnings: list[str], steady_rate: SteadyRate
) -> dict[str, float]:
    port = stack.settings.intake_port
    figures: dict[str, float] = {}

    measure = measurer(figures, p, r)

    raw_db = await create_database(stack.admin_url, f"bench_raw_{r}")
    await measure("raw_copy", lambda: baselines.raw_copy(raw_db, p.raw_events))
    await measure("raw_tx64", lambda: baselines.raw_one_per_transaction(raw_db, p.singles))
    # Each baseline's database is vacuumed right after its measure (#12): left to autovacuum,
    # its tables were vacuumed and analysed during the measures that followed (the steady
    # latency measure among them), on the stack's two cores: a cost of the harness, not of
    # Branchline. Not dropped: DROP DATABASE forces an immediate checkpoint.
    await latency.vacuum([raw_db])
    for key, functions in (("peer_8t", False), ("peer_8t_fn", True)):
        db = await create_database(stack.admin_url, f"bench_{key}_{r}")

        async def peer_saves(db: str = db, functions: bool = functions) -> float:
            return await asyncio.to_thread(
                peer.one_per_save, db, p.peer_events, db_functions=functions
            )

        await measure(key, peer_saves)
        await latency.vacuum([db])
    batch_db = await create_database(stack.admin_url, f"bench_peer_500_{r}")
    await measure(
        "peer_500", lambda: asyncio.to_thread(peer.batched_save, batch_db, p.peer_batch_events)
    )
    await latency.vacuum([batch_db])
    await measure(
        "raw_produce",
        lambda: baselines.raw_produce(stack.settings.kafka_bootstrap, "bench.raw", p.raw_events),
    )

    async def singles() -> float:
        cpu_before = stack.cpu_seconds("intake-api")
        written_before = await branchline_measures.log_end(stack.settings.intake_database_url)
        async with ConnectionSplit(stack) as split:
            latencies = await branchline_measures.single_posts(port, stack.token, p.singles)
        split.record(figures, "bl_single", requests=p.singles)
        figures["bl_single_p50"] = latencies.p50_ms
        figures["bl_single_p99"] = latencies.p99_ms
        # CPU per event barely depends on how busy the machine is: the steadiest figure here.
        used = stack.cpu_seconds("intake-api") - cpu_before
        figures["bl_single_cpu_ms"] = 1000 * used / p.singles
        group = await branchline_measures.events_per_commit(
            stack.settings.intake_database_url, written_before
        )
        if group is not None:
            figures["bl_single_group"] = group
        return latencies.per_s

    await measure("bl_single", singles)

    consumer_ports = [
        ("followup", stack.settings.followup_worker_port),
        ("audit", stack.settings.audit_consumer_port),
    ]

    async def steady() -> float:
        # Right after the single-POST peak (the batches and the long history come later):
        # start from consumers that caught up with it, to measure a steady load, not the
        # backlog of the throughput measures.
        rates = await settle(stack, p)
        figures["drain_followup"] = rates["followup"]
        figures["drain_audit"] = rates["audit"]
        # The debt autovacuum owes for what the measures before wrote (in the second and
        # later repetitions the previous one's 20,000-event burst), paid here in every
        # repetition and reported, instead of during one repetition's steady measure (#12).
        settings = stack.settings
        figures["vacuum_before_steady"] = await latency.vacuum(
            [
                settings.intake_database_url,
                settings.followup_database_url,
                settings.audit_database_url,
            ]
        )
        # The worker's and the broker's CPU over the load and its catching up, per event: the
        # dev broker's fetch costs more with every batch in its log, so a later repetition's
        # lag can be the broker's (docs/performance.md, Round 13).
        cpu_before = {c: stack.cpu_seconds(c) for c in ("followup-worker", "broker")}
        waits_before = {
            key: await branchline_measures.fetch_wait(port) for key, port in consumer_ports
        }
        async with (
            latency.wal_flushes(stack.admin_url) as wal_samples,
            ConnectionSplit(stack) as split,
        ):
            result = await latency.end_to_end(
                port,
                stack.token,
                rate=steady_rate.fix(figures["bl_single"]),
                duration_s=p.latency_s,
                followup_dsn=stack.settings.followup_database_url,
                audit_dsn=stack.settings.audit_database_url,
            )
        # its pool's idle connections are taken in turn: about as many requests each
        split.record(figures, "e2e_offered")
        wal = latency.WalFlushes.of(wal_samples)
        if wal is None:
            warnings.append(f"repetition {r + 1}: no WAL sync during the steady load")
        else:
            figures["e2e_wal_flush_ms"] = wal.per_sync_ms
            figures["e2e_wal_flush_worst_ms"] = wal.worst_per_sync_ms
        if result.answered:
            for component, key in (
                ("followup-worker", "e2e_worker_cpu_us"),
                ("broker", "e2e_broker_cpu_us"),
            ):
                used = stack.cpu_seconds(component) - cpu_before[component]
                figures[key] = 1e6 * used / result.answered
        # A consumer whose fetch wait was raised (a long log of the dev broker) delays what
        # reaches it at its log end by up to half the wait: the latency figures say so (#12).
        for key, port_of in consumer_ports:
            before, after = waits_before[key], await branchline_measures.fetch_wait(port_of)
            if after is None:
                continue
            figures[f"e2e_{key}_fetch_wait_ms"] = after[0]
            figures[f"e2e_{key}_fetch_wait_raises"] = after[1] - (before or (0, 0))[1]
            if after[0] > stack.settings.kafka_fetch_max_wait_ms:
                warnings.append(
                    f"repetition {r + 1}: the {key} consumer's fetch wait was {after[0]:.0f} ms "
                    f"after the steady load (configured "
                    f"{stack.settings.kafka_fetch_max_wait_ms} ms; raised {after[1]:.0f} times "
                    "since it started): its latency includes it"
                )
        figures["e2e_http_p99"] = result.http_p99_ms
        figures["e2e_followup_p50"] = result.followup_commit_p50_ms
        figures["e2e_followup_p99"] = result.followup_commit_p99_ms
        figures["e2e_audit_p50"] = result.audit_commit_p50_ms
        figures["e2e_audit_p99"] = result.audit_commit_p99_ms
        figures["e2e_followup_seen_p50"] = result.followup_p50_ms
        figures["e2e_followup_seen_p99"] = result.followup_p99_ms
        figures["e2e_audit_seen_p50"] = result.audit_p50_ms
        figures["e2e_audit_seen_p99"] = result.audit_p99_ms
        figures["e2e_poll_window_p99"] = result.poll_window_p99_ms
        figures["e2e_audit_poll_window_p99"] = result.audit_poll_window_p99_ms
        figures["e2e_followup_row_p99"] = result.followup_row_p99_ms
        figures["e2e_audit_row_p99"] = result.audit_row_p99_ms
        for consumer, missing in (
            ("followup", result.followup_missing),
            ("audit", result.audit_missing),
        ):
            if missing:
                warnings.append(
                    f"repetition {r + 1}: {missing} of {result.answered} events of the steady "
                    f"load had not reached the {consumer} consumer after 300 s: its "
                    "percentiles are lower bounds"
                )
        return result.offered_per_s

    await measure("e2e_offered", steady)

    async def drain_capacity() -> float:
        # After the steady load (its consumers caught up with it), so that it disturbs
        # nothing measured before; its backlog is worked off before the batches.
        drained = await branchline_measures.drain_capacity(stack, p.drain_events)
        figures["drain_capacity_audit"] = drained["audit"].per_s
        for name, d in drained.items():
            console.print(
                f" ({name}: first commit {d.first_commit_s:.2f} s after the resume, "
                f"last {d.took_s:.2f} s)",
                end="",
            )
        return drained["followup"].per_s

    await measure("drain_capacity_followup", drain_capacity)

    async def batch() -> float:
        async with ConnectionSplit(stack, wanted=1) as split:
            rate = await branchline_measures.batches(port, stack.token, p.batch_events)
        split.record(figures, "bl_batch", requests=p.batch_events)
        return rate

    await measure("bl_batch", batch)

    async def history_costs() -> float:
        costs = await branchline_measures.post_costs_with_history(
            port,
            stack.token,
            {"bl_post_h10": 10, "bl_post_hlong": p.long_history},
            posts=50,
            settle=lambda: settle(stack, p),
        )
        figures["bl_post_h10"] = costs["bl_post_h10"]
        return costs["bl_post_hlong"]

    await measure("bl_post_hlong", history_costs)

    # A database of its own per repetition: the second repetition's relay no longer starts
    # from the first's 10,000 published rows (#12).
    relay_db = await stack.database(f"bench_relay_{r}", migrated="eventstore")
    await measure(
        "bl_relay",
        lambda: branchline_measures.relay(stack.settings, relay_db, "bench.relay", p.raw_events),
    )

    ledger_db = await stack.database(f"bench_ledger_{r}", migrated="audit")

    async def ledger() -> float:
        rates = await scale.ledger_rates(stack.settings, ledger_db, p.ledger_events)
        figures["ledger_verify"] = rates.verify_per_s
        figures["ledger_verify_p2"] = rates.verify_p2_per_s
        return rates.append_per_s

    await measure("ledger_append", ledger)
    await latency.vacuum([relay_db, ledger_db])
    return figures


REBUILD_LIMIT_S = 900
"""A rebuild that has not finished by then is stopped and reported (it once stalled at its
swap while the live worker was far behind): the growth steps after it still run."""


async def bank_traffic_lines(stack: BenchStack, p: Profile, r: int) -> dict[str, float]:
    """The single POST as a bank's traffic makes it (many branch systems' tokens; clients with
    history), measured for repetition ``r`` after EVERY repetition's steady load (#12: run
    inside the repetitions, their thousands of events came before the next repetition's steady
    load and raised its followup lag in 4 pairs of 4, Round 20 "fulag"; the codes of a round
    compared then differed by the lines their benchmark had)."""
    port = stack.settings.intake_port
    figures: dict[str, float] = {}

    measure = measurer(figures, p, r)

    async def posted(key: str, posts: Awaitable[Latencies]) -> float:
        """``posts`` (``p.singles`` single POSTs) timed: their p99 and intake's CPU per event
        kept beside their rate; their backlog worked off before what follows."""
        cpu_before = stack.cpu_seconds("intake-api")
        async with ConnectionSplit(stack) as split:
            latencies = await posts
        split.record(figures, key, requests=p.singles)
        figures[f"{key}_p99"] = latencies.p99_ms
        used = stack.cpu_seconds("intake-api") - cpu_before
        figures[f"{key}_cpu_ms"] = 1000 * used / p.singles
        await settle(stack, p)
        return latencies.per_s

    # Many branch systems, one token each, so a group commit's group holds several callers
    # (bl_single has one token).
    tokens = branchline_measures.branch_tokens(stack, BRANCH_SYSTEMS)
    await measure(
        "bl_single16",
        lambda: posted("bl_single16", branchline_measures.single_posts(port, tokens, p.singles)),
    )

    async def singles_with_event_ids() -> float:
        # A bank's branch systems that care about idempotency send their own event ids
        # (docs/api.md): each group is then the ordinary one (an id is looked up), and with
        # several callers in it, each written by a statement of its own in id order, nearly
        # every later caller is out of that order (docs/intake.md, "Event ids are not
        # streams"). Its reruns are counted in the server's log, across every intake process.
        log = stack.postgres_log
        offset = branchline_measures.log_offset(log)
        written_before = await branchline_measures.log_end(stack.settings.intake_database_url)
        rate = await posted(
            "bl_ids16",
            branchline_measures.single_posts(port, tokens, p.singles, event_ids=True),
        )
        group = await branchline_measures.events_per_commit(
            stack.settings.intake_database_url, written_before
        )
        if group is not None:
            figures["bl_ids16_group"] = group
        reruns = branchline_measures.reruns_in_log(log, offset, INTAKE_DATABASE)
        figures["bl_ids16_id_order_reruns"] = reruns.id_order
        figures["bl_ids16_lock_cycle_reruns"] = reruns.lock_cycles
        return rate

    await measure("bl_ids16", singles_with_event_ids)

    async def singles_with_resends() -> float:
        # The same with RESEND_SHARE of the POSTs resends of an event their branch system
        # had answered shortly before (each answered 202, a duplicate): in a group commit
        # the resend goes the ordinary way, the rest of its group the guessed one (Round 26,
        # #12). A guessed statement refused on a resend's key is counted in the server's log.
        log = stack.postgres_log
        offset = branchline_measures.log_offset(log)
        rate = await posted(
            "bl_ids16_resend5",
            branchline_measures.single_posts(
                port, tokens, p.singles, event_ids=True, resend_share=RESEND_SHARE
            ),
        )
        figures["bl_ids16_resend5_unique_violations"] = (
            branchline_measures.unique_violations_in_log(log, offset, INTAKE_DATABASE)
        )
        return rate

    await measure("bl_ids16_resend5", singles_with_resends)

    async def singles_to_existing_clients() -> float:
        # A bank's traffic is mostly events for clients that exist (#12): consents to clients
        # registered just before (untimed), each always from the same connection, so the
        # remembered-client write is measured, not the first registration's. As many events
        # as the single-POST measure (a few seconds). A client registered through another
        # intake process than the one its connection reaches now is read once, then
        # remembered.
        run = await branchline_measures.register_clients(port, stack.token, EXISTING_CLIENTS)
        await asyncio.sleep(1.0)  # their relaying done (bench.intake_cpu does the same)
        return await posted(
            "bl_existing",
            branchline_measures.existing_client_posts(
                port, stack.token, run, p.singles, EXISTING_CLIENTS
            ),
        )

    await measure("bl_existing", singles_to_existing_clients)
    return figures


async def growth(stack: BenchStack, p: Profile, warnings: list[str]) -> dict[str, float]:
    """Once, on a stack of its own: filled step by step (bench/scale.py)."""
    figures: dict[str, float] = {}
    for step, events in enumerate(p.growth_steps):
        console.print(f"  growth: filling to {events:,} events ...", end="")
        started = time.perf_counter()
        figures |= await scale.growth_step(
            stack, events, p.growth_sample, warnings, batch_events=p.growth_batch_events
        )
        console.print(f" ({time.perf_counter() - started:.1f}s)")
        if step == 0:
            # The rebuild replays every event of the topics: measured at the first step (its
            # rate, not its duration, is the figure), then again in 2 processes on the same
            # stack (#12, Round 26: `--processes 2`).
            figures |= await rebuilds(stack, warnings)
    return figures


async def rebuilds(stack: BenchStack, warnings: list[str]) -> dict[str, float]:
    """``branchline rebuild followup`` timed in one process, then in two; a rebuild that has
    not finished after ``REBUILD_LIMIT_S`` is reported and the next one is not run."""
    figures: dict[str, float] = {}
    for key, processes in (("rebuild", 1), ("rebuild_p2", 2)):
        console.print(f"  rebuild in {processes} process(es) ...", end="")
        try:
            async with asyncio.timeout(REBUILD_LIMIT_S):
                rate, replayed = await scale.rebuild_rate(stack.settings, processes=processes)
        except TimeoutError:
            warnings.append(
                f"the rebuild in {processes} process(es) had not finished after {REBUILD_LIMIT_S} s"
            )
            console.print(" did not finish")
            break
        figures[key] = rate
        if processes == 1:
            figures["rebuild_events"] = replayed
        console.print(f" {rate:,.1f} ev/s over {replayed:,} events")
    return figures


def all_measures(p: Profile) -> list[tuple[str, str, str]]:
    return [*MEASURES, *scale.growth_measures(p.growth_steps)]


def all_ratios(p: Profile) -> dict[str, list[str]]:
    return {**RATIOS, **scale.growth_ratios(p.growth_steps)}


def summarise(
    runs: list[dict[str, float]], p: Profile, steady_rule: str = HALF_PEAK_RULE
) -> dict[str, Any]:
    measures: dict[str, Any] = {}
    sizes = p.__dict__
    for key, title, unit in all_measures(p):
        values = [run[key] for run in runs if key in run]
        if not values:
            continue
        entry: dict[str, Any] = {
            "title": title.format(
                **sizes,
                branch_systems=BRANCH_SYSTEMS,
                existing_clients=EXISTING_CLIENTS,
                resend_percent=f"{100 * RESEND_SHARE:g}",
                steady_rule=steady_rule.split(",")[0],
            ),
            "unit": unit,
            "runs": values,
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
            "target": target_of(key),
        }
        ratios = {}
        for base in all_ratios(p).get(key, []):
            # a figure measured once (growth, rebuild) is in the first repetition only
            per_run = [run[key] / run[base] for run in runs if key in run and run.get(base)]
            if per_run:
                ratios[base] = {
                    "runs": per_run,
                    "min": min(per_run),
                    "median": statistics.median(per_run),
                    "max": max(per_run),
                }
        entry["ratios"] = ratios
        entry |= split_entries(runs, key)
        measures[key] = entry
    return measures


def _fmt(value: float, unit: str) -> str:
    if unit == "ev/s":
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def render(result: dict[str, Any]) -> Table:
    env = result["machine"]
    table = Table(
        title=f"Branchline benchmark ({result['profile']}, {result['repeat']} runs; "
        f"{env['cores']} cores {env['cpu']}; load {env['load_average_at_start'][0]:.1f})"
    )
    for column in (
        "measure",
        "median",
        "min - max",
        "ratios (median of per-run)",
        "target",
        "intake split",
    ):
        table.add_column(column)
    for entry in result["measures"].values():
        ratios = ", ".join(f"{r['median']:.3f}x {base}" for base, r in entry["ratios"].items())
        table.add_row(
            f"{entry['title']} ({entry['unit']})",
            _fmt(entry["median"], entry["unit"]),
            f"{_fmt(entry['min'], entry['unit'])} - {_fmt(entry['max'], entry['unit'])}",
            ratios,
            entry.get("target", ""),
            split_text(entry),
        )
    return table


def render_markdown(result: dict[str, Any]) -> str:
    """The table for docs/performance.md and the README, with the machine it ran on."""
    env = result["machine"]
    versions = env["versions"]
    lines = [
        f"`make bench` profile {result['profile']}, {result['repeat']} runs, "
        f"{env['started_at']}, commit {env['commit']}: {env['cores']} cores ({env['cpu']}), "
        f"{env['memory_gib']} GiB, load average {env['load_average_at_start'][0]:.1f} at "
        f"start and {env['load_average_at_end'][0]:.1f} at end; Python {env['python']}, "
        f"PostgreSQL {versions.get('postgresql')}, eventsourcing {versions.get('eventsourcing')}, "
        f"psycopg {versions.get('psycopg')}, asyncpg {versions.get('asyncpg')}, "
        f"aiokafka {versions.get('aiokafka')}.",
        "",
        "| measure | median | min - max | ratios (median of per-run ratios) | target "
        "| intake split |",
        "|---|---:|---:|---|---|---|",
    ]
    for entry in result["measures"].values():
        ratios = ", ".join(f"{r['median']:.3f}x {base}" for base, r in entry["ratios"].items())
        unit = entry["unit"]
        target = entry.get("target", "").replace(">=", "≥").replace("<=", "≤")
        lines.append(
            f"| {entry['title'].strip()} ({unit}) | {_fmt(entry['median'], unit)} | "
            f"{_fmt(entry['min'], unit)} - {_fmt(entry['max'], unit)} | {ratios} | {target} "
            f"| {split_text(entry)} |"
        )
    lines += steady_lines(result)
    lines += ["", *[f"Warning: {w}" for w in result.get("warnings", [])]]
    return "\n".join(lines) + "\n"


def steady_lines(result: dict[str, Any]) -> list[str]:
    """The steady load's rate, its rule, and how it compares with what each consumer drains
    (#12)."""
    steady = result.get("steady_rate")
    if not steady or not steady.get("per_s"):
        return []
    text = f"Steady load: {steady['per_s']:,.0f} ev/s in every repetition ({steady['rule']})."
    capacities = []
    for key, name in (
        ("drain_capacity_followup", "the followup worker"),
        ("drain_capacity_audit", "the audit consumer"),
    ):
        entry = result["measures"].get(key)
        if entry:
            offered = result["measures"].get("e2e_offered", {}).get("ratios", {})
            ratio = offered.get(key, {}).get("median")
            share = f" (the steady load is {ratio:.2f}x of it)" if ratio else ""
            capacities.append(f"{name} {entry['median']:,.0f} ev/s{share}")
    if capacities:
        text += (
            " Drain capacity with intake idle (median; an upper bound of the rate each keeps "
            "up with under the load): " + ", ".join(capacities) + "."
        )
    return ["", text]


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="standard")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument(
        "--steady-rate",
        type=float,
        default=None,
        metavar="N",
        help="the steady open-loop load's rate, N ev/s, in every repetition (default: half the "
        "first repetition's single-POST peak). A fixed rate makes runs of two codes offer "
        "their consumers the same load; the JSON records it as steady_rate",
    )
    return parser


async def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    if args.steady_rate is not None and args.steady_rate <= 0:
        parser.error("--steady-rate must be above 0 ev/s")
    profile = PROFILES[args.profile]
    if args.repeat:
        profile = Profile(**{**profile.__dict__, "repeat": args.repeat})
    result: dict[str, Any] = {
        "profile": profile.name,
        "repeat": profile.repeat,
        "sizes": profile.__dict__,
        "machine": machine(ROOT),
        "warnings": [],
    }
    async with running_stack() as stack:
        conn = await asyncpg.connect(stack.admin_url)
        result["machine"]["versions"]["postgresql"] = await conn.fetchval("SHOW server_version")
        await conn.close()
        steady_rate = SteadyRate.of(args.steady_rate)
        runs = [
            await one_repetition(stack, profile, r, result["warnings"], steady_rate)
            for r in range(profile.repeat)
        ]
        for r, figures in enumerate(runs):
            figures |= await bank_traffic_lines(stack, profile, r)
        result["steady_rate"] = {"per_s": steady_rate.per_s, "rule": steady_rate.rule}
    # Growth on a stack of its own, from empty, so each step holds exactly its events and the
    # backlog the fill leaves (the followup worker) cannot disturb the measures above.
    async with running_stack() as stack:
        grown = await growth(stack, profile, result["warnings"])
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    # The growth figures are measured once: they join the first repetition's figures.
    runs[0] |= grown
    result["measures"] = summarise(runs, profile, steady_rate.rule)
    console.print(render(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    markdown = args.out.with_suffix(".md")
    markdown.write_text(render_markdown(result))
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"results: {args.out} and {markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
