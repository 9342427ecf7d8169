"""What the remembered-client write costs PostgreSQL, with the stale guess's own error (#12).

``_REMEMBERED_WRITE_SQL`` fails a stale guess by calling ``es_stale_stream_guess`` (event store
migration 010, SQLSTATE BL001); before, by casting a text that is no number to a number. Both
only on the failing branch; this measures the branch that stands, the one nearly every write
takes. Starts an embedded PostgreSQL only, migrates the event store, creates ``--streams``
streams of one event each, then writes one event at a time on a remembered stream (version
and last event as written), from one connection, ``--writes`` per turn with each statement,
alternated (old, new, new, old, ...), ``--pairs`` pairs, each turn after a ``VACUUM``. Prints
per turn the wall time and the server backend's CPU (``/proc``, utime + stime) per write, and
the load average.

    python -m bench.probe_remembered_write [--streams 2000] [--writes 2000] [--pairs 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from bench.stack import process_cpu_seconds  # noqa: E402
from branchline_shared.events.envelope import RecordedEvent  # noqa: E402
from branchline_shared.eventstore import postgres  # noqa: E402

NEW = postgres._REMEMBERED_WRITE_SQL
_GUARD = """    WHERE (SELECT CASE WHEN count(*) = cardinality($5::text[]) THEN true
                       ELSE es_stale_stream_guess(count(*), cardinality($5::text[])) END
           FROM taken)
"""
_CAST = """    WHERE CASE WHEN (SELECT count(*) FROM taken) = cardinality($5::text[]) THEN true
               ELSE ('stale stream guess: ' || (SELECT count(*) FROM taken))::int > 0 END
"""
assert _GUARD in NEW, "the statement changed: update this probe"
OLD = NEW.replace(_GUARD, _CAST)
"""The statement as it was before migration 010 (the cast), otherwise the same."""


def _event(stream: str, version: int) -> RecordedEvent:
    return RecordedEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "type": "client.consent_granted",
            "schema_version": 1,
            "occurred_at": datetime.now(UTC),
            "recorded_at": datetime.now(UTC),
            "source": "intake",
            "actor": {"id": "staff-17", "role": "teller"},
            "client_id": stream.removeprefix("client-"),
            "branch_id": "BR-001",
            "channel": "walk_in",
            "stream_id": stream,
            "stream_version": version,
            "data": {"purposes": ["service"]},
        }
    )


async def _write(
    conn: asyncpg.Connection[Any], sql: str, stream: str, at: tuple[int, uuid.UUID] | None
) -> tuple[int, uuid.UUID]:
    version = (at[0] if at else 0) + 1
    event = _event(stream, version)
    arguments: list[Any] = [
        [event.model_dump_json()],
        [None],
        ["intake.events"],
        [event.subject_id],
        [stream],
        [version],
    ]
    if at is None:
        await conn.fetch(postgres._GUESSED_WRITE_SQL, *arguments)
    else:
        await conn.fetch(sql, *arguments, [at[0]], [at[1]])
    return version, event.event_id


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base, migrated=("eventstore",)) as stack:
        url = stack.dsn("intake")
        conn = await asyncpg.connect(url)
        try:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            run = uuid.uuid4().hex[:6]
            streams = [f"client-C-{run}-{i}" for i in range(args.streams)]
            at: dict[str, tuple[int, uuid.UUID]] = {}
            for s in streams:
                at[s] = await _write(conn, OLD, s, None)
            for sql in (OLD, NEW):  # warm up: prepared, cached
                for s in streams[:50]:
                    at[s] = await _write(conn, sql, s, at[s])
            for pair in range(args.pairs):
                order = ("old", "new") if pair % 2 == 0 else ("new", "old")
                for name in order:
                    sql = OLD if name == "old" else NEW
                    # Each turn from the same table state: the updated stream rows' dead
                    # versions (every write updates its stream's row) pruned, not left to an
                    # autovacuum that lands in one turn or another.
                    await conn.execute("VACUUM (ANALYZE) es_streams, es_events, es_outbox")
                    cpu, started = process_cpu_seconds(backend), time.perf_counter()
                    for i in range(args.writes):
                        s = streams[i % len(streams)]
                        at[s] = await _write(conn, sql, s, at[s])
                    wall = time.perf_counter() - started
                    used = process_cpu_seconds(backend) - cpu
                    print(
                        f"pair {pair + 1} {name}: {1e6 * wall / args.writes:.0f} us wall, "
                        f"{1e6 * used / args.writes:.0f} us server CPU per write "
                        f"(load {os.getloadavg()[0]:.1f}, {time.strftime('%H:%M:%S')})",
                        flush=True,
                    )
        finally:
            await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=6)
    return run_in_scratch(measure, parser.parse_args(), "bench-remembered-")


if __name__ == "__main__":
    sys.exit(main())
