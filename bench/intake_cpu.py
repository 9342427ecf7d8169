"""Intake CPU per single event, alone (docs/performance.md, #12).

The benchmark's "intake CPU per event" (user + system CPU of every intake process, from
`/proc`, divided by the events answered), without the rest of `make bench`: starts the
benchmark's stack, warms up, then measures single events from 64 connections, a few times.
Unlike `bench.profile_intake` nothing samples the process, so the figure is the process's own.

    python -m bench.intake_cpu [--events 3000] [--repeat 2] [--env NAME=VALUE ...]
                               [--branch-systems N] [--existing-clients K] [--event-ids]
                               [--resend-share P] [--refused-share P] [--balanced]
                               [--no-settle]

``--env`` starts the stack with a setting changed (e.g. ``BRANCHLINE_INTAKE_PROCESSES=1``), so
that a setting can be paired against the default on one tree. ``--branch-systems N`` posts
with N branch systems' tokens (connection ``c`` with token ``c % N``), so a group commit's
group holds several callers, as a bank's many branch systems make it; 1 (the default) is the
benchmark's one token. ``--existing-clients K`` posts consents to clients registered first
(not timed), K per connection, each client always from the same connection
(``existing_client_posts``) instead of new clients' registrations; 0 (the default): new ones.
``--event-ids``: each new client's registration sent with an ``event_id`` of its own (a
UUIDv4), as a branch system that sends idempotency keys does; each line then counts the
transactions run again after a write out of the id order met a lock, and after a deadlock,
across every intake process (``bench.branchline_measures.reruns_in_log``).
``--resend-share P`` (with ``--event-ids``): P of the POSTs resends, the same body and id as one
its connection sent and had answered shortly before (``bench.branchline_measures.with_resends``,
a branch system retrying or replaying, #12); each line then also counts intake's statements
refused by a unique index (a guessed group's write that met a resent id or its stream, run
again the ordinary way: ``unique_violations_in_log``). "ev/s", the CPU and the latencies count
every POST, resends included.
``--refused-share P``: P of the POSTs consents for clients never registered, each refused by
D-09 (409) and its refusal recorded (``bench.branchline_measures.with_refusals``): a refusal
decided on a guessed group's guess (Round 28, #12); counted in "ev/s", the CPU and latencies.
``--balanced``: each measurement's 64 connections opened until every intake process holds as
many (``bench.intake_split.balanced_clients``: the load tool sees which process accepted each),
so that the split (Round 30's confounder) is 32/32 every time; with ``--existing-clients`` too
(connection ``c`` still sends for the same clients, only opened balanced).
Each line also gives the connections each process held and its CPU per request it served
(``bench.intake_split``).
Before each repetition (the first one after the warm-up) the followup worker and the audit
consumer are let catch up with what intake wrote, as `make bench` does between its intake lines
(``bench.run.settle`` with the standard profile: their applied counts stood still 5 s): they
share the 2 cores with intake, so a backlog left by one repetition was paid during the next
(Round 31: the last of 6 repetitions cost more than the first in 9 of 12 stacks). Each line says
how long the settling before it took. ``--no-settle``: the earlier tool's behaviour (no wait;
with ``--existing-clients`` a 1 s sleep after the registrations), to compare against.
"Events per group" counts the rows' distinct commit times (one per committed transaction; a
row written in a savepoint has an ``xmin`` of its own but its transaction's commit time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.branchline_measures import (  # noqa: E402
    branch_tokens,
    existing_client_posts,
    log_offset,
    register_clients,
    reruns_in_log,
    single_posts,
    unique_violations_in_log,
)
from bench.intake_split import ConnectionSplit, balanced_clients, serving_pids  # noqa: E402
from bench.run import PROFILES, settle  # noqa: E402
from bench.stack import (  # noqa: E402
    child_pids,
    process_cpu_seconds,
    running_stack,
)


def per_process_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far of each intake process (the forked children serve; the parent
    supervises)."""
    every = list(pids)
    for pid in pids:
        every.extend(child_pids(pid))
    return {pid: process_cpu_seconds(pid) for pid in every}


async def last_position(conn: asyncpg.Connection[Any]) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM es_events"))


async def events_per_transaction(conn: asyncpg.Connection[Any], after: int) -> float:
    """Events per writing transaction (group commit) of every intake process, from the rows
    written after ``after``: the rows of one transaction share its commit time (the stack
    runs with ``track_commit_timestamp``). Not their ``xmin``: a row written in a savepoint
    (a caller of a group of several) carries the savepoint's subtransaction id, so counting
    ``xmin`` counted callers, not groups (#12)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS events, "
        "count(DISTINCT pg_xact_commit_timestamp(xmin)) AS groups "
        "FROM es_events WHERE global_position > $1",
        after,
    )
    assert row is not None
    return float(row["events"]) / max(1, int(row["groups"]))


async def settled(wait: Callable[[], Awaitable[dict[str, float]]] | None) -> str:
    """Waits for the consumers (``wait``: ``bench.run.settle``) before a repetition; answers
    what its line says of it: the whole wait (the quiet period included) and how long each
    consumer still applied events. No ``wait`` (``--no-settle``): nothing waited, nothing said."""
    if wait is None:
        return ""
    started = time.monotonic()
    took = await wait()
    behind = ", ".join(f"{name} {took[name]:.1f} s" for name in sorted(took))
    return f"settled in {time.monotonic() - started:.1f} s (still applying: {behind}); "


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--branch-systems", type=int, default=1, metavar="N")
    parser.add_argument("--existing-clients", type=int, default=0, metavar="K")
    parser.add_argument("--event-ids", action="store_true")
    parser.add_argument("--resend-share", type=float, default=0.0, metavar="P")
    parser.add_argument("--refused-share", type=float, default=0.0, metavar="P")
    parser.add_argument("--balanced", action="store_true")
    parser.add_argument("--no-settle", action="store_true")
    args = parser.parse_args()
    if args.resend_share and not args.event_ids:
        parser.error("--resend-share resends events' own ids: it needs --event-ids")
    extra = dict(pair.split("=", 1) for pair in args.env)
    async with running_stack(extra) as stack:
        port = stack.settings.intake_port
        conn = await asyncpg.connect(stack.settings.intake_database_url)
        tokens = branch_tokens(stack, max(1, args.branch_systems))
        await single_posts(port, tokens, 300)  # warm up (imports, pools, caches)
        wait = None if args.no_settle else (lambda: settle(stack, PROFILES["standard"]))
        for _ in range(args.repeat):
            run = ""
            if args.existing_clients > 0:  # registered before the measurement
                run = await register_clients(port, tokens, args.existing_clients)
                if wait is None:
                    await asyncio.sleep(1.0)  # their relaying done
            waited = await settled(wait)
            first = await last_position(conn)
            each = per_process_cpu(stack.pids.get("intake-api", []))
            before = stack.cpu_seconds("intake-api")
            offset = log_offset(stack.postgres_log)
            opened = (
                await balanced_clients(serving_pids(stack), port, tokens[0])
                if args.balanced
                else None
            )
            async with ConnectionSplit(stack) as watched:
                if args.existing_clients > 0:
                    latencies = await existing_client_posts(
                        port, tokens, run, args.events, args.existing_clients, opened=opened
                    )
                else:
                    latencies = await single_posts(
                        port,
                        tokens,
                        args.events,
                        event_ids=args.event_ids,
                        resend_share=args.resend_share,
                        refused_share=args.refused_share,
                        opened=opened,
                    )
            used = stack.cpu_seconds("intake-api") - before
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            group = await events_per_transaction(conn, first)
            reruns = reruns_in_log(stack.postgres_log, offset, "branchline_intake")
            refused = unique_violations_in_log(stack.postgres_log, offset, "branchline_intake")
            after = per_process_cpu(stack.pids.get("intake-api", []))
            # each process's share (the one holding the relay lock also publishes)
            split = " / ".join(
                f"{1000 * (after[pid] - each.get(pid, 0.0)) / args.events:.3f}"
                for pid in sorted(after)
                if after[pid] - each.get(pid, 0.0) > 0.01
            )
            mine = watched.cpu_ms_by_process(args.events)
            own = " / ".join("-" if ms is None else f"{ms:.3f}" for ms in mine)
            served = [ms for ms in mine if ms is not None]
            mean = statistics.mean(served) if served else 0.0
            print(
                f"{args.events} events: intake CPU {1000 * used / args.events:.3f} ms per event, "
                f"{latencies.per_s:.0f} ev/s, p50 {latencies.p50_ms:.1f} ms, "
                f"p99 {latencies.p99_ms:.1f} ms, {group:.1f} events per group; by process {split}; "
                f"mean of the processes' CPU per own request {mean:.3f} ms; "
                f"connections by process {' / '.join(str(n) for n in watched.split)}; "
                f"CPU per own request by process {own}; "
                f"{len(tokens)} branch systems; "
                f"{'consents to existing clients; ' if run else ''}"
                f"{'own event ids; ' if args.event_ids else ''}"
                f"{f'resend share {args.resend_share:g}; ' if args.resend_share else ''}"
                f"{f'refused share {args.refused_share:g}; ' if args.refused_share else ''}"
                f"{'balanced connections; ' if args.balanced else ''}"
                f"{waited}"
                f"unique violations {refused}; "
                f"reruns: id order {reruns.id_order}, lock cycles {reruns.lock_cycles}; "
                f"load average {load}",
                flush=True,
            )
        await conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
