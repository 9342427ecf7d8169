"""What PostgreSQL spends on a batch's write, statement by statement (docs/performance.md,
Round 20, #12).

`bench.profile_batch --statements` says a batch of 1,000 new clients spends most of its
statement time in the write (`_WRITE_SQL`, five parts of 200), then `COMMIT`, then the
streams' creation. This takes the write apart on its own embedded PostgreSQL with the event
store's migrations, no services: each round is one transaction that creates 1,000 new streams
(at their likely version, as intake does) and then runs one arm on the same kind of
envelopes, parts of 200, arms alternated round by round:

- ``streams``: only the streams' creation (what every arm includes);
- ``parse``: the envelopes cast to ``jsonb`` and counted, nothing written;
- ``events``: the events' insert alone (the write without its outbox rows and versions);
- ``write``: the write as intake sends it (`_WRITE_SQL`: events, outbox, versions);
- ``copy``: the same rows by ``COPY`` (positions drawn first, then the events' and the outbox
  rows' COPY in text form), the alternative to ``INSERT ... SELECT`` the brief named.

Wall time per 1,000 events (commit excluded), median and range over ``--rounds``, and the
backend's CPU from ``/proc`` (user + system, commit included) per arm. Hold the stack locks:
it measures.

    python -m bench.batch_write_sql [--rounds 12]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from bench.stack import process_cpu_seconds  # noqa: E402
from branchline_shared.eventstore.postgres import _WRITE_SQL  # noqa: E402

PART = 200
EVENTS = 1000
HASH = b"h" * 32

Arm = Callable[[Any, list[dict[str, Any]]], Awaitable[None]]


def envelopes(run: str) -> list[dict[str, Any]]:
    """The benchmark's events as intake stores them: new clients registered, version 1."""
    return [
        {
            "event_id": str(uuid.uuid4()),
            "type": "client.registered",
            "schema_version": 1,
            "occurred_at": "2026-12-04T12:00:00Z",
            "recorded_at": "2026-12-04T12:00:00.123456Z",
            "source": "intake",
            "actor": {"id": "s-1", "role": "teller"},
            "client_id": f"C-{run}-{i}",
            "product_id": None,
            "staff_id": None,
            "branch_id": "BR-1",
            "channel": "walk_in",
            "stream_id": f"client-C-{run}-{i}",
            "stream_version": 1,
            "correlation_id": None,
            "causation_id": None,
            "late_entry": None,
            "data": {"client_type": "individual", "rm_id": "rm-1"},
            "submitted_by": {"system": "branch-1", "roles": ["branch_system"]},
            "synthetic": False,
        }
        for i in range(EVENTS)
    ]


def parts(envs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [envs[s : s + PART] for s in range(0, len(envs), PART)]


async def arm_streams(conn: Any, envs: list[dict[str, Any]]) -> None:
    return None


async def arm_parse(conn: Any, envs: list[dict[str, Any]]) -> None:
    for part in parts(envs):
        await conn.fetchval(
            "SELECT count(e::jsonb) FROM unnest($1::text[]) AS e",
            [orjson.dumps(e).decode() for e in part],
        )


async def arm_events(conn: Any, envs: list[dict[str, Any]]) -> None:
    # Read once, ``staged`` would be inlined and each ``e->>`` would cast the text again:
    # MATERIALIZED keeps the one parse per envelope the write has (its CTE is read twice).
    events_only = (
        _WRITE_SQL.split("), outbox AS (")[0].replace("staged AS (", "staged AS MATERIALIZED (")
        + ")\nSELECT event_id FROM written"
    )
    for part in parts(envs):
        await conn.fetch(
            events_only,
            [orjson.dumps(e).decode() for e in part],
            [HASH] * len(part),
            ["t"] * len(part),
            [e["client_id"] for e in part],
        )


async def arm_write(conn: Any, envs: list[dict[str, Any]]) -> None:
    for part in parts(envs):
        await conn.fetch(
            _WRITE_SQL,
            [orjson.dumps(e).decode() for e in part],
            [HASH] * len(part),
            ["t"] * len(part),
            [e["client_id"] for e in part],
        )


def _copy_text(value: str) -> str:
    # COPY's text form: a backslash is its escape; JSON text from orjson has no raw tab or
    # newline, so doubling backslashes is the whole escaping.
    return value.replace("\\", "\\\\")


async def arm_copy(conn: Any, envs: list[dict[str, Any]]) -> None:
    hashed = "\\\\x" + HASH.hex()
    for part in parts(envs):
        positions = await conn.fetchval(
            "SELECT array_agg(nextval('es_global_position')) FROM generate_series(1, $1)",
            len(part),
        )
        rows = "".join(
            f"{g}\t{e['event_id']}\t{e['stream_id']}\t{e['stream_version']}\t{e['type']}\t"
            f"{e['client_id']}\t{e['occurred_at']}\t{e['recorded_at']}\t{hashed}\t"
            f"{_copy_text(orjson.dumps(e).decode())}\n"
            for g, e in zip(positions, part, strict=True)
        )
        await conn.copy_to_table(
            "es_events",
            source=io.BytesIO(rows.encode()),
            columns=[
                "global_position",
                "event_id",
                "stream_id",
                "stream_version",
                "type",
                "client_id",
                "occurred_at",
                "recorded_at",
                "submission_hash",
                "envelope",
            ],
        )
        outbox = "".join(f"{e['event_id']}\tt\t{e['client_id']}\n" for e in part)
        await conn.copy_to_table(
            "es_outbox",
            source=io.BytesIO(outbox.encode()),
            columns=["event_id", "topic", "message_key"],
        )


ARMS: dict[str, Arm] = {
    "streams": arm_streams,
    "parse": arm_parse,
    "events": arm_events,
    "write": arm_write,
    "copy": arm_copy,
}


async def measure(dsn: str, rounds: int) -> None:
    """The arms' rounds on ``dsn``, an event store migrated as intake's (``measure_in_stack``)."""
    conn = await asyncpg.connect(dsn)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        wall: dict[str, list[float]] = {a: [] for a in ARMS}
        cpu: dict[str, float] = dict.fromkeys(ARMS, 0.0)
        names = list(ARMS)
        for r in range(rounds + 1):  # the first round warms the connection up, untimed
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                envs = envelopes(uuid.uuid4().hex[:8])
                streams = [e["stream_id"] for e in envs]
                used = process_cpu_seconds(backend)
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.fetch(
                        "INSERT INTO es_streams (stream_id, version) "
                        "SELECT * FROM unnest($1::text[], $2::int[]) "
                        "ON CONFLICT DO NOTHING RETURNING stream_id, version",
                        streams,
                        [1] * len(streams),
                    )
                    await ARMS[name](conn, envs)
                    elapsed = time.perf_counter() - started
                if r:
                    wall[name].append(1000 * elapsed)
                    cpu[name] += process_cpu_seconds(backend) - used
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"ms per {EVENTS} events (commit excluded), {rounds} rounds; load average {load}")
        for name in names:
            times = wall[name]
            print(
                f"  {name:8s} median {statistics.median(times):6.1f}  "
                f"range {min(times):6.1f}-{max(times):6.1f}  "
                f"backend CPU with commit {1000 * cpu[name] / rounds:6.1f}",
                flush=True,
            )
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    return run_in_scratch(measure_in_stack, args, "batch-write-sql-")


async def measure_in_stack(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base) as stack:
        await measure(await stack.database("batch_write", migrated="eventstore"), args.rounds)


if __name__ == "__main__":
    sys.exit(main())
