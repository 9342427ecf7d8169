"""Time ``es_claim_event_ids`` per call (#12, Round 31): event store migration 011's PL/pgSQL
loop, one PERFORM per bucket (A), against migration 012's one statement (B), both loaded
from the shipped files under other names into one embedded PostgreSQL. Server-side: a DO
block calls the function N times, each in its own transaction (COMMIT in the loop, so the
advisory locks are released), timing the calls alone with clock_timestamp(); 16 ids looked
up; a quarter of the buckets exclusive; rounds in A B B A order, three times, for 32 and 4
buckets. Run under the stack locks (docs/performance.md, rule 4)::

    PYTHONPATH=. .venv/bin/python bench/claim_function_time.py 3000
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

import asyncpg

from bench.probe_stack import probe_stack

PACKAGE = "branchline_shared.eventstore.migrations"
FILES = {
    "loop (011)": "011_event_id_claims.sql",
    "one statement (012)": "012_event_id_claims_one_statement.sql",
}

LOOP = """
DO $d$
DECLARE t0 timestamptz; total interval := '0'; b int[]; x bool[]; ids uuid[]; h bytea[];
BEGIN
  b := ARRAY(SELECT g FROM generate_series(0, {buckets} - 1) g);
  x := ARRAY(SELECT (g % 4 = 0) FROM generate_series(0, {buckets} - 1) g);
  ids := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, 16));
  h := ARRAY(SELECT NULL::bytea FROM generate_series(1, 16));
  FOR k IN 1 .. {calls} LOOP
    t0 := clock_timestamp();
    PERFORM {function}(7777, b, x, ids, h);
    total := total + (clock_timestamp() - t0);
    COMMIT;
  END LOOP;
  RAISE NOTICE 'us_per_call=%', extract(epoch from total) * 1e6 / {calls};
END $d$;
"""


def _renamed(file: str, name: str) -> str:
    text = (files(PACKAGE) / file).read_text(encoding="utf-8")
    for create in (
        "CREATE FUNCTION es_claim_event_ids",
        "CREATE OR REPLACE FUNCTION es_claim_event_ids",
    ):
        text = text.replace(create, f"CREATE OR REPLACE FUNCTION {name}")
    return text


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="claim_time_") as directory:
        async with probe_stack(Path(directory)) as stack:
            # the shipped event store (011 and 012 included) as intake's is migrated
            conn = await asyncpg.connect(await stack.database("claims", migrated="eventstore"))
            functions = {}
            for n, (label, file) in enumerate(FILES.items()):
                functions[label] = f"claim_{n}"
                await conn.execute(_renamed(file, f"claim_{n}"))
            notices: list[float] = []
            conn.add_log_listener(lambda _, m: notices.append(float(m.message.split("=")[1])))
            a, b = FILES
            results: dict[tuple[int, str], list[float]] = {}
            for buckets in (32, 4):
                for label in [a, b, b, a] * 3:
                    await conn.execute(
                        LOOP.format(buckets=buckets, calls=calls, function=functions[label])
                    )
                    results.setdefault((buckets, label), []).append(notices[-1])
            for (buckets, label), times in sorted(results.items()):
                print(
                    f"{buckets:>2} buckets, {label:<20} µs per call: min {min(times):.2f} "
                    f"median {statistics.median(times):.2f} max {max(times):.2f}"
                )
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
