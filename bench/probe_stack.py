"""The one stack start of bench/'s standalone probes (#12): a scratch PostgreSQL (and, when
asked, a tansu broker of its own) in the probe's scratch folder, the databases it names
migrated, and a teardown that runs whatever ends the block.

Before, about thirty probes each started their server and broker, migrated and stopped them
in their own words (a broker started before the server, a server stopped in a ``finally``
the broker's did not cover, the followup read model's address built again): the differences
that matter are now the arguments.

    async with probe_stack(base, broker=True, migrated=("followup",)) as stack:
        stack.settings  # the test suite's settings, pointed at this server and broker
        stack.dsn("followup")  # a database's address (``stack.live_dsn``: its read model)
        await stack.database("ledger_1", migrated="audit")  # another one, made and migrated

``server_settings`` are the server's own (``-c name=value``: ``shared_preload_libraries``, …).

``bench.stack.running_stack`` is another thing: the whole product as ``branchline dev`` runs
it (every component its own process), for ``make bench``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scratch import UNUSED_BROKER, embedded_postgres
from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.postgres import EmbeddedPostgres
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.postgres.pool import ensure_database


async def _event_store(settings: Any) -> None:
    from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, migrate_database

    await migrate_database(settings.intake_database_url, [EVENT_STORE_MIGRATIONS])


async def _followup(settings: Any) -> None:
    from branchline_followup.bootstrap import prepare_database

    await prepare_database(settings)


async def _audit(settings: Any) -> None:
    from branchline_audit.adapters.database import prepare_database

    await prepare_database(settings)


MIGRATIONS: dict[str, Callable[[Any], Awaitable[None]]] = {
    # intake's database with the event store alone (what the probes of the store write to)
    "eventstore": _event_store,
    # followup's database as its worker prepares it (its event store, read model, roles)
    "followup": _followup,
    # audit's ledger as its consumer prepares it (the writer and reader roles)
    "audit": _audit,
}
"""What ``probe_stack(migrated=...)`` can migrate, in the order asked."""

DATABASES = {
    "eventstore": "intake_database_url",
    "followup": "followup_database_url",
    "audit": "audit_database_url",
}
"""The settings' address each of ``MIGRATIONS`` migrates (``ProbeStack.database`` points it
elsewhere)."""


@dataclass(frozen=True)
class ProbeStack:
    server: EmbeddedPostgres
    settings: Any  # BranchlineSettings: the test suite's (tests.support.stack.make_settings)
    broker: TansuBroker | None  # None: no broker (``settings.kafka_bootstrap`` is unused)

    def dsn(self, database: str) -> str:
        """A component's database (``intake``, ``followup``, ``audit``, ``keys``), or any
        other name on this server."""
        url = getattr(self.settings, f"{database}_database_url", None)
        return url if isinstance(url, str) else self.server.url(database)

    @property
    def live_dsn(self) -> str:
        """followup's database with its live read model first on the search path (where the
        API and the worker read ``fu_tasks``)."""
        from branchline_followup.adapters import pg_schemas

        return pg_schemas.with_search_path(self.dsn("followup"), pg_schemas.LIVE_SCHEMA)

    async def database(self, name: str, migrated: str | None = None) -> str:
        """The address of database ``name`` (as ``dsn``: a component's, or any other on this
        server), created if it does not exist and, with ``migrated`` (a key of
        ``MIGRATIONS``), migrated as that key migrates its own component's database: for the
        probes that make a database per round or migrate another one the same way."""
        return await migrated_database(self.settings, self.dsn(name), migrated)


async def migrated_database(settings: Any, url: str, migrated: str | None = None) -> str:
    """Database ``url`` created if it does not exist and, with ``migrated`` (a key of
    ``MIGRATIONS``), migrated as that key migrates its own component's database (``settings``
    copied with that component's address pointed at ``url``): what ``ProbeStack.database``
    and ``bench.stack.BenchStack.database`` (``make bench``'s relay and ledger databases) do;
    ``url``."""
    if migrated is not None and migrated not in MIGRATIONS:
        raise ValueError(f"no migration named {migrated!r}: {sorted(MIGRATIONS)}")
    await ensure_database(url)
    if migrated is not None:
        await MIGRATIONS[migrated](settings.model_copy(update={DATABASES[migrated]: url}))
    return url


@contextlib.contextmanager
def tansu_broker(log: Path | None = None) -> Iterator[TansuBroker]:
    """A tansu broker of its own on a free port (its log to ``log``), stopped at the end."""
    broker = TansuBroker(free_port(), log) if log is not None else TansuBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def probe_stack(
    base: Path,
    *,
    broker: bool = False,
    migrated: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
    server_settings: Mapping[str, str] | None = None,
) -> AsyncIterator[ProbeStack]:
    """An embedded PostgreSQL in ``base`` (started with ``server_settings``; and a tansu
    broker, logging to ``base``, with ``broker``), the databases ``migrated`` names (keys of
    ``MIGRATIONS``) migrated, with the settings ``overrides`` changes (before the migrations:
    they read them); all stopped when the block ends, however it ends (a failed migration
    included)."""
    migrated = tuple(migrated)
    unknown = set(migrated) - MIGRATIONS.keys()
    if unknown:
        raise ValueError(f"no migration named {sorted(unknown)}: {sorted(MIGRATIONS)}")
    with contextlib.ExitStack() as stopping:
        started = stopping.enter_context(tansu_broker(base / "tansu.log")) if broker else None
        bootstrap = started.bootstrap if started is not None else UNUSED_BROKER
        async with embedded_postgres(base, bootstrap, server_settings, **(overrides or {})) as (
            server,
            settings,
        ):
            for name in migrated:
                await MIGRATIONS[name](settings)
            yield ProbeStack(server, settings, started)
