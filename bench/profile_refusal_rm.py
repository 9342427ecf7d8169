"""What the triggers that keep the client's RM on its refusals cost PostgreSQL (#12).

Starts an embedded PostgreSQL only, migrates followup's database, and times, in one fresh
session per run, the backend's CPU (``/proc/PID/schedstat``) for writes the triggers fire on,
as the worker sends them (``read_models.save_client``, a refusal's insert; transactions of
``--per-tx`` writes with the swap lock and generic plans as the worker's units take them):

- ``new``: clients saved for the first time (the insert trigger: their refusals take the RM),
  half of them with a refusal recorded before;
- ``moved``: the same clients saved again with another RM (the update trigger);
- ``refusal``: a refusal of a known client (the refusal's insert trigger);
- ``batch``: new clients (half with a refusal before) written ``--per-tx`` at a time by ONE
  statement, as the worker's batch writes them (:mod:`.collected_writes`' client part).

Each run installs one version of the trigger functions: ``004`` (console migration 004: a
dynamic statement, planned at every firing), ``005`` (console migration 005: static
statements planned once per session), ``006`` (005's, and console migration 006's insert
trigger per statement over its inserted rows instead of per row) or ``none`` (the triggers
disabled: the floor), and the
runs alternate (004, 005, none, 004, ...) ``--pairs`` times on the same server. Prints µs of
the backend's CPU per write for each run and the medians.

    python -m bench.profile_refusal_rm [--clients 2000] [--pairs 3] [--per-tx 20]
        [--variants 005 006 006 005]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_rebuild import on_cpu_seconds  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters import collected_writes, pg_schemas, read_models  # noqa: E402
from branchline_followup.domain.records import ClientFacts  # noqa: E402

MIGRATIONS = ROOT / "services/followup/branchline_followup/console_migrations"
_FUNCTION = re.compile(r"^CREATE (?:OR REPLACE )?FUNCTION .*?\$\$;$", re.DOTALL | re.MULTILINE)


def functions_of(migration: str) -> list[str]:
    """The ``CREATE FUNCTION`` statements of a console migration, as replacements."""
    text = next(MIGRATIONS.glob(f"{migration}_*.sql")).read_text()
    found = [
        m.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        for m in _FUNCTION.findall(text)
    ]
    if len(found) != (1 if migration == "006" else 2):
        raise RuntimeError(f"{migration}: expected its trigger functions, found {len(found)}")
    return found


_INSERT_TRIGGER = {
    "row": (
        "CREATE TRIGGER fu_clients_rm_inserted AFTER INSERT ON fu_read.fu_clients "
        "FOR EACH ROW EXECUTE FUNCTION public.fu_clients_rm_to_refusals()"
    ),
    "statement": (
        "CREATE TRIGGER fu_clients_rm_inserted AFTER INSERT ON fu_read.fu_clients "
        "REFERENCING NEW TABLE AS fu_clients_inserted FOR EACH STATEMENT "
        "EXECUTE FUNCTION public.fu_clients_inserted_rm_to_refusals()"
    ),
}
"""fu_clients' insert trigger as console migration 004 made it, and as 006 does."""


async def install(admin: Any, variant: str) -> None:
    """The trigger functions and fu_clients' insert trigger of ``variant`` (not ``none``)."""
    for migration in ("005", "006") if variant == "006" else (variant,):
        for statement in functions_of(migration):
            await admin.execute(statement)
    await admin.execute("DROP TRIGGER IF EXISTS fu_clients_rm_inserted ON fu_read.fu_clients")
    await admin.execute(_INSERT_TRIGGER["statement" if variant == "006" else "row"])


_REFUSAL = (
    "INSERT INTO fu_refusals (event_id, rule, title, occurred_at, recorded_at, branch_id, "
    "client_id, refused_type, actor_id, actor_role, submitter) "
    "VALUES ($1, 'D-05', 'title', $2, $2, 'BR-001', $3, 'visit.arrived', 'a', 'teller', 'a') "
    "ON CONFLICT DO NOTHING"
)


def facts(client_id: str, rm_id: str) -> ClientFacts:
    at = datetime.now(UTC)
    return ClientFacts(client_id, "individual", rm_id, "BR-001", "new", at, at)


async def timed_writes(conn: Any, writes: list[tuple[str, Any]], per_tx: int) -> float:
    """The backend's CPU seconds for ``writes`` (``("client", facts)`` or ``("refusal", id)``)
    in transactions of ``per_tx``, as the worker's units run them."""
    pid = conn.get_server_pid()
    started = on_cpu_seconds(pid)
    for i in range(0, len(writes), per_tx):
        async with conn.transaction():
            await pg_schemas.hold_swap_lock_shared(conn, generic_plans=True)
            for kind, value in writes[i : i + per_tx]:
                if kind == "client":
                    await read_models.save_client(conn, value)
                else:
                    await conn.execute(_REFUSAL, uuid.uuid4(), datetime.now(UTC), value)
    return on_cpu_seconds(pid) - started


async def timed_batches(conn: Any, clients: list[ClientFacts], per_statement: int) -> float:
    """The backend's CPU seconds for ``clients`` written ``per_statement`` at a time by one
    statement each (the worker's batch: :mod:`.collected_writes`), a transaction each."""
    pid = conn.get_server_pid()
    started = on_cpu_seconds(pid)
    for i in range(0, len(clients), per_statement):
        statement = collected_writes.CollectedStatement()
        collected_writes.add_clients(statement, clients[i : i + per_statement])
        async with conn.transaction():
            await pg_schemas.hold_swap_lock_shared(conn, generic_plans=True)
            await conn.execute(statement.sql or "", *statement.args)
    return on_cpu_seconds(pid) - started


async def one_run(
    dsn: str, admin: Any, variant: str, run: int, args: argparse.Namespace
) -> dict[str, float]:
    import asyncpg

    if variant == "none":
        for table in ("fu_clients", "fu_refusals"):
            await admin.execute(f"ALTER TABLE fu_read.{table} DISABLE TRIGGER USER")
    else:
        for table in ("fu_clients", "fu_refusals"):
            await admin.execute(f"ALTER TABLE fu_read.{table} ENABLE TRIGGER USER")
        await install(admin, variant)
    ids = [f"P{run}-{n}" for n in range(args.clients)]
    batched = [f"B{run}-{n}" for n in range(args.clients)]
    conn = await asyncpg.connect(dsn)
    try:
        # refusals of half the clients before they are known (untimed)
        await conn.executemany(
            _REFUSAL, [(uuid.uuid4(), datetime.now(UTC), c) for c in [*ids[::2], *batched[::2]]]
        )
        await conn.execute("ANALYZE fu_read.fu_refusals")
        await conn.execute("ANALYZE fu_read.fu_clients")
        new = await timed_writes(conn, [("client", facts(c, "rm-1")) for c in ids], args.per_tx)
        moved = await timed_writes(conn, [("client", facts(c, "rm-2")) for c in ids], args.per_tx)
        refusal = await timed_writes(conn, [("refusal", c) for c in ids], args.per_tx)
        batch = await timed_batches(conn, [facts(c, "rm-3") for c in batched], args.per_tx)
        if variant != "none":
            wrong = await conn.fetchval(
                "SELECT count(*) FROM fu_refusals r JOIN fu_clients c USING (client_id) "
                "WHERE r.rm_id IS DISTINCT FROM c.rm_id AND c.client_id = ANY($1::text[])",
                [*ids, *batched],
            )
            if wrong:
                raise RuntimeError(f"{variant}: {wrong} refusals without their client's RM")
    finally:
        await conn.close()
    n = args.clients
    return {
        "new": 1e6 * new / n,
        "moved": 1e6 * moved / n,
        "refusal": 1e6 * refusal / n,
        "batch": 1e6 * batch / n,
    }


async def measure(args: argparse.Namespace, base: Path) -> None:
    import asyncpg

    async with probe_stack(base, migrated=("followup",)) as stack:
        dsn = stack.live_dsn
        admin = await asyncpg.connect(dsn)
        results: dict[str, list[dict[str, float]]] = {}
        try:
            run = 0
            for _ in range(args.pairs):
                for variant in args.variants:
                    run += 1
                    figures = await one_run(dsn, admin, variant, run, args)
                    results.setdefault(variant, []).append(figures)
                    print(
                        f"run {run} {variant}: "
                        + ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
                        + " µs backend CPU/write",
                        flush=True,
                    )
        finally:
            await admin.close()
    import os

    for variant, runs in results.items():
        print(
            f"{variant} medians: "
            + ", ".join(
                f"{k} {statistics.median(r[k] for r in runs):.1f} "
                f"({min(r[k] for r in runs):.1f}-{max(r[k] for r in runs):.1f})"
                for k in runs[0]
            )
            + f" µs/write; {args.clients} clients, {args.per_tx} per transaction"
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--per-tx", type=int, default=20)
    parser.add_argument("--variants", nargs="+", default=["004", "005", "none"])
    return run_in_scratch(measure, parser.parse_args(), "refusal-rm-")


if __name__ == "__main__":
    raise SystemExit(main())
