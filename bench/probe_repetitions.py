"""Why the benchmark's second repetition of the steady latency measure is the slow one (#12).

Runs `bench.run.one_repetition`'s parts in order on the benchmark's stack (no growth stack),
``--repeat`` times, while a probe samples every half second: the followup worker's applied
count, both outboxes' unpublished rows, non-idle PostgreSQL backends (autovacuum, checkpointer,
the worker's statements and their waits), the followup tables' autovacuum/analyze counts, the
checkpointer's counters, every component's CPU. Each steady measure is reported per second of
the load: events, lag p50 / max to the followup read model, split at the intake relay's
publication (accepted -> published -> applied). The lag's end is when a reader can first see
the event (``vis_*``: the benchmark's watcher, ``bench.latency.watching``, late by at most the
poll window reported as ``poll_window_p99_ms``); beside it, the lag read from the rows' own
timestamps (``row_*``: ``fu_applied_events.applied_at``, the applying transaction's start,
which misses its duration and commit, docs/performance.md, Round 10). ``pub_*`` is the
outbox row's ``published_at``, also a row timestamp.

    python -m bench.probe_repetitions --repeat 2 --out /tmp/probe.jsonl [--skip batch,history]
        [--rate 1000] [--fair] [--checkpoint]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench import baselines, branchline_measures, latency, peer, scale  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from bench.run import PROFILES, Profile, create_database  # noqa: E402
from bench.stack import BenchStack, running_stack  # noqa: E402

FU_TABLES = (
    "fu_applied_events",
    "fu_clients",
    "fu_tasks",
    "fu_timers",
    "fu_client_events",
    "es_events",
    "es_outbox",
    "es_streams",
)


PROBE_BACKENDS: set[int] = set()
"""The backends of the probe's own connections: their CPU is reported as ``probe:<database>``,
not with the database's (#12: its ``count(*)`` of ``fu_applied_events`` every half second reads
the whole table, a cost growing with it that Round 10's figures counted as the followup's)."""


def pg_cpu_by_kind(postmaster: int) -> dict[str, float]:
    """CPU seconds of the PostgreSQL server's processes so far, by kind (client backends by
    database, the probe's own backends apart, autovacuum, checkpointer, ...), from /proc
    (Linux)."""
    from bench.stack import child_pids, process_cpu_seconds

    out: dict[str, float] = {}
    for pid in child_pids(postmaster):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        words = title.replace("postgres: ", "", 1).split()
        kind = words[0] if words else "?"
        if kind == "postgres" and len(words) > 1:  # a client backend: user database host
            kind = ("probe:" if pid in PROBE_BACKENDS else "db:") + words[1]
        elif kind in ("autovacuum", "background", "logical", "io", "walwriter"):
            kind = " ".join(words[:2])
        out[kind] = out.get(kind, 0.0) + process_cpu_seconds(pid)
    # what ended children (autovacuum workers, backends) used, reaped by the postmaster
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    out["pg exited"] = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return out


def postmaster_pid(data_dir: Path) -> int:
    pidfile = next(data_dir.rglob("postmaster.pid"))
    return int(pidfile.read_text().splitlines()[0])


class Probe:
    def __init__(self, stack: BenchStack, out: Path) -> None:
        self.stack = stack
        self.out = out.open("w")
        self.t0 = time.time()
        self.phase = "start"
        self._last_tables: dict[str, tuple[int, int, int, int]] = {}
        self._last_ckpt: tuple[Any, ...] | None = None

    def log(self, kind: str, **data: Any) -> None:
        row = {"t": round(time.time() - self.t0, 2), "phase": self.phase, "kind": kind, **data}
        self.out.write(json.dumps(row, default=str) + "\n")
        self.out.flush()

    async def run(self) -> None:
        s = self.stack.settings
        fu = await asyncpg.connect(s.followup_database_url)
        intake = await asyncpg.connect(s.intake_database_url)
        admin = await asyncpg.connect(self.stack.admin_url)
        for conn in (fu, intake, admin):
            PROBE_BACKENDS.add(int(await conn.fetchval("SELECT pg_backend_pid()")))
        try:
            while True:
                await self.sample(fu, intake, admin)
                await asyncio.sleep(0.5)
        finally:
            for c in (fu, intake, admin):
                await c.close()

    async def scrape(self) -> None:
        """The consumers' /metrics every half second: self-checks, jumps, repairs, and how
        long the worker's event loop took to answer (its health server shares the loop)."""
        ports = {
            "worker": self.stack.settings.followup_worker_port,
            "audit": self.stack.settings.audit_consumer_port,
        }
        names = (
            "branchline_consumer_self_checks_total",
            "branchline_consumer_position_jumps_total",
            "branchline_consumer_gaps_repaired_total",
            "branchline_consumer_self_check_not_reached",
            "branchline_reconcile_repaired_total",
        )
        last: dict[str, str] = {}
        while True:
            for who, port in ports.items():
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(30):
                        text = await _get_metrics(port)
                except Exception as exc:
                    self.log("scrape_error", who=who, error=repr(exc))
                    continue
                took = time.perf_counter() - started
                if took > 0.25:
                    self.log("slow_answer", who=who, ms=round(1000 * took))
                for line in text.splitlines():
                    if line.startswith(names):
                        key, _, value = line.rpartition(" ")
                        if last.get(who + key) != value:
                            last[who + key] = value
                            self.log("metric", who=who, key=key, value=value)
            await asyncio.sleep(0.5)

    async def sample(
        self, fu: asyncpg.Connection, intake: asyncpg.Connection, admin: asyncpg.Connection
    ) -> None:
        # Rows inserted so far, from the statistics (flushed by the worker's backend at most
        # once a second): a count(*) here read the whole table every half second, a cost
        # growing with the table on the stack's cores (#12).
        applied = await fu.fetchval(
            "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'fu_applied_events'"
        )
        fu_outbox = await fu.fetchval("SELECT count(*) FROM es_outbox WHERE published_at IS NULL")
        in_outbox = await intake.fetchval(
            "SELECT count(*) FROM es_outbox WHERE published_at IS NULL"
        )
        cpu = {c: round(self.stack.cpu_seconds(c), 2) for c in self.stack.pids}
        self.log(
            "sample",
            applied=applied,
            fu_outbox=fu_outbox,
            intake_outbox=in_outbox,
            load=os.getloadavg()[0],
            cpu=cpu,
        )
        active = await admin.fetch(
            """SELECT pid, backend_type, datname, state, wait_event_type, wait_event,
                      extract(epoch FROM now() - xact_start)::float AS xact_s,
                      left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS q
               FROM pg_stat_activity
               WHERE pid <> pg_backend_pid()
                 AND (state IS DISTINCT FROM 'idle' OR backend_type <> 'client backend')
                 AND backend_type NOT IN ('background writer', 'walwriter',
                     'logical replication launcher', 'autovacuum launcher', 'io worker')"""
        )
        rows = [dict(r) for r in active if r["backend_type"] != "checkpointer" or r["wait_event"]]
        if rows:
            self.log("active", rows=rows)
        for r in await fu.fetch(
            """SELECT relname, autovacuum_count, autoanalyze_count, n_live_tup, n_dead_tup,
                      n_mod_since_analyze
               FROM pg_stat_user_tables WHERE relname = ANY($1)""",
            list(FU_TABLES),
        ):
            key = (r["autovacuum_count"], r["autoanalyze_count"], 0, 0)
            if self._last_tables.get(r["relname"]) != key:
                self._last_tables[r["relname"]] = key
                self.log("table", **dict(r))
        ckpt = await admin.fetchrow(
            "SELECT num_timed, num_requested, write_time, sync_time, buffers_written "
            "FROM pg_stat_checkpointer"
        )
        if ckpt is not None and tuple(ckpt.values()) != self._last_ckpt:
            self._last_ckpt = tuple(ckpt.values())
            self.log("checkpointer", **dict(ckpt))


async def _get_metrics(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return (await reader.read()).decode(errors="replace")
    finally:
        writer.close()


async def steady_timeline(
    stack: BenchStack, probe: Probe, rate: float, duration_s: float
) -> dict[str, float]:
    s = stack.settings
    watcher_conn = await asyncpg.connect(s.followup_database_url)
    try:
        async with latency.watching((watcher_conn, "fu_applied_events")) as (seen,):
            answered, _http = await latency._send_open_loop(
                s.intake_port, stack.token, rate, duration_s, on_send=seen.sent
            )
    finally:
        await watcher_conn.close()
    gave_up = time.time()
    ids = list(answered)
    applied = await latency._arrivals(
        s.followup_database_url,
        "SELECT event_id, applied_at FROM fu_applied_events WHERE event_id = ANY($1)",
        ids,
        within_s=300,
    )
    published = await latency._arrivals(
        s.intake_database_url,
        "SELECT event_id, published_at FROM es_outbox WHERE event_id = ANY($1) "
        "AND published_at IS NOT NULL",
        ids,
        within_s=60,
    )
    start = min(answered.values())
    buckets: dict[int, list[tuple[float, float, float]]] = {}
    for e, t in answered.items():
        if e in applied and e in published:
            buckets.setdefault(int(t - start), []).append(
                (published[e] - t, applied[e] - t, seen.seen.get(e, gave_up) - t)
            )
    for sec in sorted(buckets):
        rows = buckets[sec]
        pub = sorted(p for p, _, _ in rows)
        app = sorted(a for _, a, _ in rows)
        vis = sorted(v for _, _, v in rows)
        probe.log(
            "steady_second",
            second=sec,
            at=round(start + sec - probe.t0, 1),
            n=len(rows),
            pub_p50_ms=round(1000 * percentile(pub, 0.5)),
            pub_max_ms=round(1000 * pub[-1]),
            vis_p50_ms=round(1000 * percentile(vis, 0.5)),
            vis_max_ms=round(1000 * vis[-1]),
            row_p50_ms=round(1000 * percentile(app, 0.5)),
            row_max_ms=round(1000 * app[-1]),
        )
    visible = latency.lag_figures(answered, seen.seen, gave_up)
    row = latency.lag_figures(answered, applied, time.time())
    pubs = sorted(published[e] - t for e, t in answered.items() if e in published)
    figures = {
        "offered": rate,
        "fu_visible_p50_ms": visible.p50_ms,
        "fu_visible_p99_ms": visible.p99_ms,
        "poll_window_p99_ms": latency.poll_window_p99_ms(seen),
        "fu_row_p50_ms": row.p50_ms,
        "fu_row_p99_ms": row.p99_ms,
        "pub_p99_ms": 1000 * percentile(pubs, 0.99),
        "missing": row.missing,
        "not_visible": visible.missing,
    }
    return {key: round(value, 1) for key, value in figures.items()}


TABLE_COUNTERS = (
    "n_tup_ins",
    "n_tup_upd",
    "n_tup_hot_upd",
    "n_tup_del",
    "seq_scan",
    "seq_tup_read",
    "idx_scan",
    "idx_tup_fetch",
    "autovacuum_count",
    "autoanalyze_count",
    "vacuum_count",
)


async def table_stats(dsn: str) -> dict[str, dict[str, int]]:
    """Per table and per index of one database: the cumulative counters (statements' scans
    and rows read, inserts, updates and HOT updates, vacuums) and the gauges (dead and live
    tuples, sizes in pages), so a part's difference shows what grows per event (#12)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        tables = await conn.fetch(
            f"""SELECT relname, {", ".join(TABLE_COUNTERS)}, n_dead_tup, n_live_tup,
                       pg_relation_size(relid) / 8192 AS pages,
                       heap_blks_read, heap_blks_hit, idx_blks_read, idx_blks_hit
                FROM pg_stat_user_tables JOIN pg_statio_user_tables USING (relid, relname)"""
        )
        indexes = await conn.fetch(
            """SELECT indexrelname, idx_scan, idx_tup_read, idx_tup_fetch,
                      pg_relation_size(indexrelid) / 8192 AS pages
               FROM pg_stat_user_indexes"""
        )
    finally:
        await conn.close()
    out = {
        r["relname"]: {k: int(v or 0) for k, v in dict(r).items() if k != "relname"} for r in tables
    }
    out |= {
        "i:" + r["indexrelname"]: {
            k: int(v or 0) for k, v in dict(r).items() if k != "indexrelname"
        }
        for r in indexes
    }
    return out


def stats_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, Any]]:
    """Counters as differences, gauges (dead/live tuples, pages) as after/before pairs; only
    what changed."""
    gauges = {"n_dead_tup", "n_live_tup", "pages"}
    out: dict[str, dict[str, Any]] = {}
    for rel, now in after.items():
        was = before.get(rel, {})
        row: dict[str, Any] = {}
        for k, v in now.items():
            if k in gauges:
                if v != was.get(k, 0) or (k == "n_dead_tup" and v):
                    row[k] = [was.get(k, 0), v]
            elif v - was.get(k, 0):
                row[k] = v - was.get(k, 0)
        if row:
            out[rel] = row
    return out


async def relay_rounds(dsn: str) -> int:
    """The outbox relay's publishing rounds so far (each marks its rows published at its
    transaction's ``now()``): each round's produce request leaves at most one record batch per
    partition in the broker, and tansu's in-memory fetch lists every batch of a partition
    (``bench.probe_broker``)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(DISTINCT published_at) FROM es_outbox"))
    finally:
        await conn.close()


async def xacts(stack: BenchStack) -> dict[str, int]:
    conn = await asyncpg.connect(stack.admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname, xact_commit FROM pg_stat_database WHERE datname LIKE 'branchline%'"
        )
        wal = await conn.fetchrow("SELECT wal_bytes, wal_fpi FROM pg_stat_wal")
        assert wal is not None
        # Shared buffers: blocks each database found in them (hit) or had to read (from the
        # OS), and by process kind the blocks evicted and written by the one needing a buffer
        # (#12: does the working set outgrow shared_buffers as the tables grow?).
        blocks = await conn.fetch(
            "SELECT datname, blks_read, blks_hit FROM pg_stat_database "
            "WHERE datname LIKE 'branchline%'"
        )
        io = await conn.fetch(
            "SELECT backend_type, sum(reads)::bigint AS reads, sum(writes)::bigint AS writes, "
            "sum(evictions)::bigint AS evictions, sum(extends)::bigint AS extends "
            "FROM pg_stat_io WHERE object = 'relation' GROUP BY backend_type"
        )
    finally:
        await conn.close()
    return (
        {r["datname"]: int(r["xact_commit"]) for r in rows}
        | {
            "wal_mb": int(wal["wal_bytes"]) // 1_000_000,
            "wal_fpi": int(wal["wal_fpi"]),
        }
        | {f"{r['datname']}:{k}": int(r[k] or 0) for r in blocks for k in ("blks_read", "blks_hit")}
        | {
            f"io:{r['backend_type']}:{k}": int(r[k] or 0)
            for r in io
            for k in ("reads", "writes", "evictions", "extends")
            if r[k]
        }
    )


async def repetition(
    stack: BenchStack,
    p: Profile,
    r: int,
    probe: Probe,
    skip: set[str],
    fixed_rate: float,
    fair: bool,
    checkpoint: bool = False,
) -> None:
    """``fair``: the baselines' databases vacuumed right after use and the product databases
    before the steady measure (as bench/run.py does since #12)."""
    port = stack.settings.intake_port

    async def part(name: str, run: Callable[[], Awaitable[Any]]) -> Any:
        if name in skip:
            return None
        probe.phase = f"{r + 1}:{name}"
        started = time.time()
        cpu0 = {c: stack.cpu_seconds(c) for c in stack.pids} | pg_cpu_by_kind(postmaster)
        commits0 = await xacts(stack)
        stats0 = await table_stats(stack.settings.followup_database_url)
        value = await run()
        stats1 = await table_stats(stack.settings.followup_database_url)
        rounds = {
            db: await relay_rounds(dsn)
            for db, dsn in (
                ("intake", stack.settings.intake_database_url),
                ("followup", stack.settings.followup_database_url),
            )
        }
        cpu1 = {c: stack.cpu_seconds(c) for c in stack.pids} | pg_cpu_by_kind(postmaster)
        commits1 = await xacts(stack)
        cpu = {k: round(v - cpu0.get(k, 0.0), 2) for k, v in cpu1.items()}
        cpu = {k: v for k, v in cpu.items() if v >= 0.05}
        commits = {k: v - commits0.get(k, 0) for k, v in commits1.items()}
        probe.log(
            "part",
            name=name,
            seconds=round(time.time() - started, 1),
            value=value,
            cpu=cpu,
            commits=commits,
            fu_stats=stats_delta(stats0, stats1),
            relay_rounds=rounds,
        )
        print(f"[{r + 1}] {name}: {value} ({time.time() - started:.1f}s)", flush=True)
        return value

    raw_db = await create_database(stack.admin_url, f"bench_raw_{r}")
    postmaster = postmaster_pid(Path(stack.env["BRANCHLINE_DATA_DIR"]))
    await part("raw_copy", lambda: baselines.raw_copy(raw_db, p.raw_events))
    await part("raw_tx64", lambda: baselines.raw_one_per_transaction(raw_db, p.singles))
    if fair:
        await latency.vacuum([raw_db])
    if "peer" not in skip:
        for key, functions in (("peer_8t", False), ("peer_8t_fn", True)):
            db = await create_database(stack.admin_url, f"bench_{key}_{r}")

            async def saves(db: str = db, functions: bool = functions) -> float:
                return await asyncio.to_thread(
                    peer.one_per_save, db, p.peer_events, db_functions=functions
                )

            await part(key, saves)
            if fair:
                await latency.vacuum([db])
        batch_db = await create_database(stack.admin_url, f"bench_peer_500_{r}")
        await part(
            "peer_500", lambda: asyncio.to_thread(peer.batched_save, batch_db, p.peer_batch_events)
        )
        if fair:
            await latency.vacuum([batch_db])
    await part(
        "raw_produce",
        lambda: baselines.raw_produce(stack.settings.kafka_bootstrap, "bench.raw", p.raw_events),
    )
    singles = await part(
        "bl_single",
        lambda: branchline_measures.single_posts(port, stack.token, p.singles),
    )
    rate = fixed_rate or max(5.0, (singles.per_s if singles else 1000.0) / 2)
    s = stack.settings
    await part("drain", lambda: latency.drain(s.followup_database_url, s.audit_database_url))
    if fair:
        product = [s.intake_database_url, s.followup_database_url, s.audit_database_url]
        await part("vacuum", lambda: latency.vacuum(product))
    if checkpoint:
        await part("checkpoint", lambda: checkpoint_now(stack.admin_url))
    await part("steady", lambda: steady_timeline(stack, probe, rate, p.latency_s))
    await part("bl_batch", lambda: branchline_measures.batches(port, stack.token, p.batch_events))
    await part(
        "history",
        lambda: branchline_measures.post_costs_with_history(
            port,
            stack.token,
            {"bl_post_h10": 10, "bl_post_hlong": p.long_history},
            posts=50,
            settle=lambda: latency.drain(s.followup_database_url, s.audit_database_url),
        ),
    )
    relay_name, ledger_name = f"bench_relay_{r}" if fair else "bench_relay", f"bench_ledger_{r}"
    relay_db, ledger_db = stack.database_url(relay_name), stack.database_url(ledger_name)

    # each made and migrated inside its part, as the measures migrated them before (#12)
    async def relay() -> float:
        await stack.database(relay_name, migrated="eventstore")
        return await branchline_measures.relay(
            stack.settings, relay_db, "bench.relay", p.raw_events
        )

    async def ledger() -> scale.LedgerRates:
        await stack.database(ledger_name, migrated="audit")
        return await scale.ledger_rates(stack.settings, ledger_db, p.ledger_events)

    await part("relay", relay)
    await part("ledger", ledger)
    if fair:
        await latency.vacuum([relay_db] + ([ledger_db] if "ledger" not in skip else []))


def broker_pids(bootstrap: str) -> list[int]:
    """The tansu process serving ``bootstrap`` (its command line names its listener)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if words and words[0].endswith(b"tansu") and f"tcp://{bootstrap}".encode() in words:
            found.append(int(proc.name))
    return found


async def checkpoint_now(dsn: str) -> float:
    """``CHECKPOINT`` (seconds): the steady window then starts with no checkpoint in progress,
    the next one (requested by WAL volume) about max_wal_size / 1.9 of WAL later (#12)."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip", default="", help="parts to leave out, comma-separated")
    parser.add_argument("--rate", type=float, default=0.0, help="fixed steady rate (0: half peak)")
    parser.add_argument("--env", default="", help="extra stack settings, K=V,K=V")
    parser.add_argument("--fair", action="store_true", help="vacuum as bench/run.py does")
    parser.add_argument(
        "--pg",
        default="",
        help="PostgreSQL settings for the embedded server, K=V,K=V (e.g. shared_buffers=1GB)",
    )
    parser.add_argument(
        "--checkpoint", action="store_true", help="CHECKPOINT just before each steady measure"
    )
    args = parser.parse_args()
    p = PROFILES["standard"]
    skip = {s for s in args.skip.split(",") if s}
    extra = dict(kv.split("=", 1) for kv in args.env.split(",") if kv)
    if args.pg:
        # Appended to the server's command line after its own settings: a later -c wins.
        from branchline_shared.embedded import postgres as embedded_postgres

        embedded_postgres.MAX_WAL_SIZE += "".join(f" -c {kv}" for kv in args.pg.split(",") if kv)
    async with running_stack(extra) as stack:
        # The broker is not one of the stack's components: its CPU is read too (#12: does
        # the in-memory log's cost grow with what it holds?).
        stack.pids.setdefault("broker", []).extend(broker_pids(stack.settings.kafka_bootstrap))
        probe = Probe(stack, args.out)
        task = asyncio.create_task(probe.run())
        scraper = asyncio.create_task(probe.scrape())
        try:
            for r in range(args.repeat):
                await repetition(stack, p, r, probe, skip, args.rate, args.fair, args.checkpoint)
        finally:
            task.cancel()
            scraper.cancel()
            logs = Path(stack.env.get("BRANCHLINE_DATA_DIR", "")) / "logs"
            for log in sorted(logs.glob("*.log")) if logs.exists() else []:
                tail = log.read_text(errors="replace").splitlines()[-30:]
                probe.log("component_log", name=log.name, tail=tail)


async def _main_stoppable() -> None:
    """SIGTERM/SIGINT cancel the run, so the stack is stopped (a background job started from
    a non-interactive shell ignores SIGINT)."""
    import signal

    task = asyncio.create_task(main())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    asyncio.run(_main_stoppable())
