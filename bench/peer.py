"""The peer: the Python `eventsourcing` library (PostgreSQL, psycopg binary) appending the
same events as Branchline, measured in the same run.

- one event per save from 8 threads (its usual application shape);
- the same with its database functions on (``POSTGRES_ENABLE_DB_FUNCTIONS=y``: the insert
  runs as one server-side function call);
- 500 events per save from one thread (its batch shape).

Runs synchronously (the library is blocking): call it from a worker thread.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.workload import event_body


class BenchClient(Aggregate):
    @event("Registered")
    def __init__(
        self,
        client_id: str,
        branch_id: str,
        channel: str,
        occurred_at: str,
        actor: dict[str, Any],
        data: dict[str, Any],
    ) -> None:
        self.client_id = client_id
        self.branch_id = branch_id
        self.channel = channel
        self.occurred_at = occurred_at
        self.actor = actor
        self.data = data


class BenchClients(Application[Any]):
    pass


def peer_env(dsn: str, *, db_functions: bool, pool_size: int) -> dict[str, str]:
    parts = urlsplit(dsn)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y" if db_functions else "n",
        "CREATE_TABLE": "y",
    }


def _aggregate(i: int, run: str) -> BenchClient:
    body = event_body(i, run)
    return BenchClient(
        client_id=body["client_id"],
        branch_id=body["branch_id"],
        channel=body["channel"],
        occurred_at=body["occurred_at"],
        actor=body["actor"],
        data=body["data"],
    )


def one_per_save(dsn: str, events: int, *, threads: int = 8, db_functions: bool) -> float:
    app = BenchClients(env=peer_env(dsn, db_functions=db_functions, pool_size=threads))
    try:
        run = f"peer{int(db_functions)}"
        shares = [range(t, events, threads) for t in range(threads)]

        def save_all(mine: range) -> None:
            # Building the aggregate is part of handling the command, as parsing and
            # validating the request is in Branchline's figure.
            for i in mine:
                app.save(_aggregate(i, run))

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            for done in [pool.submit(save_all, share) for share in shares]:
                done.result(timeout=600)
        return events / (time.perf_counter() - started)
    finally:
        app.close()


def batched_save(dsn: str, events: int, *, per_save: int = 500) -> float:
    app = BenchClients(env=peer_env(dsn, db_functions=False, pool_size=1))
    try:
        started = time.perf_counter()
        for first in range(0, events, per_save):
            last = min(events, first + per_save)
            app.save(*(_aggregate(i, "peerbatch") for i in range(first, last)))
        return events / (time.perf_counter() - started)
    finally:
        app.close()
