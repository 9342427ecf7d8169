"""What a lost COMMIT's check costs the commits that are not lost (#12): nothing is sent, but
each unit of work now keeps the ids it wrote and its ``COMMIT`` is in a ``try``.

Starts an embedded PostgreSQL only, migrates the event store, then writes one new client's
event per transaction through the event store as it was (``--base``'s
``eventstore/postgres.py``, loaded from git) and as it is, alternated (old, new, new, old,
...), ``--writes`` per turn, ``--pairs`` pairs, each turn after a ``VACUUM``: by the
batch's unit of work (``unit_of_work``, asyncpg's ``transaction()``) and by a group's shared
transaction (``shared_transaction``, the single POST's ordinary way). Prints per turn the
wall time and this process's CPU per transaction, and the load average.

    python -m bench.probe_commit_checked [--base main] [--writes 2000] [--pairs 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_shared.events.envelope import RecordedEvent  # noqa: E402
from branchline_shared.eventstore import postgres  # noqa: E402
from branchline_shared.postgres.pool import open_pool  # noqa: E402

MODULE = "shared/branchline_shared/eventstore/postgres.py"


def old_module(base: str, folder: Path) -> ModuleType:
    text = subprocess.run(
        ["git", "show", f"{base}:{MODULE}"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = folder / "old_postgres.py"
    path.write_bytes(text)
    spec = importlib.util.spec_from_file_location("old_postgres", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _event(client: str) -> RecordedEvent:
    return RecordedEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "type": "client.registered",
            "schema_version": 1,
            "occurred_at": datetime.now(UTC),
            "recorded_at": datetime.now(UTC),
            "source": "intake",
            "actor": {"id": "staff-17", "role": "teller"},
            "client_id": client,
            "branch_id": "BR-001",
            "channel": "walk_in",
            "stream_id": f"client-{client}",
            "stream_version": 1,
            "data": {"client_type": "individual", "rm_id": "rm-7"},
        }
    )


async def _unit(store: Any, event: RecordedEvent) -> None:
    async with store.unit_of_work() as uow:
        await uow.lock_streams([event.stream_id], likely={event.stream_id: 1})
        uow.stage(event, topic="intake.events", submission_hash=None)
        await uow.commit()


async def _shared(store: Any, event: RecordedEvent) -> None:
    async with store.shared_transaction() as shared:
        await shared.lock_streams([event.stream_id])
        async with shared.isolated(alone=True), shared.unit_of_work() as uow:
            uow.stage(event, topic="intake.events", submission_hash=None)
            await uow.commit()


async def measure(args: argparse.Namespace, base: Path) -> None:
    modules = {"old": old_module(args.base, base), "new": postgres}
    async with probe_stack(base, migrated=("eventstore",)) as stack:
        url = stack.dsn("intake")
        pool = await open_pool(url, min_size=1, max_size=1)
        try:
            stores = {name: m.PostgresEventStore(pool) for name, m in modules.items()}
            for path, write in (("unit_of_work", _unit), ("shared_transaction", _shared)):
                for name in ("old", "new"):  # warm up: statements prepared, cached
                    for _ in range(100):
                        await write(stores[name], _event(f"W{uuid.uuid4().hex[:12]}"))
                for pair in range(args.pairs):
                    order = ("old", "new") if pair % 2 == 0 else ("new", "old")
                    for name in order:
                        events = [_event(f"C{uuid.uuid4().hex[:12]}") for _ in range(args.writes)]
                        await pool.execute("VACUUM (ANALYZE) es_streams, es_events, es_outbox")
                        cpu, started = time.process_time(), time.perf_counter()
                        for event in events:
                            await write(stores[name], event)
                        wall = time.perf_counter() - started
                        used = time.process_time() - cpu
                        print(
                            f"{path} pair {pair + 1} {name}: "
                            f"{1e6 * wall / args.writes:.0f} us wall, "
                            f"{1e6 * used / args.writes:.0f} us client CPU per transaction "
                            f"(load {os.getloadavg()[0]:.1f}, {time.strftime('%H:%M:%S')})",
                            flush=True,
                        )
        finally:
            await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="main")
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=4)
    return run_in_scratch(measure, parser.parse_args(), "bench-commit-checked-")


if __name__ == "__main__":
    sys.exit(main())
