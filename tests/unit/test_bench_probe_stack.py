"""The bench probes' one stack start (#12, bench/probe_stack.py): what it starts, migrates in
the order asked with the settings' overrides, and that it stops all it started however the
block ends (a migration that fails included). The server and broker here are stand-ins that
record; the probes themselves run it on a real PostgreSQL and tansu."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from bench import probe_stack as module
from bench.scratch import UNUSED_BROKER

pytestmark = pytest.mark.unit


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    done: list[Any] = []

    @contextlib.contextmanager
    def broker(log: Path | None = None) -> Iterator[Any]:
        done.append(("broker started", log))
        try:
            yield SimpleNamespace(bootstrap="127.0.0.1:1234")
        finally:
            done.append("broker stopped")

    @contextlib.asynccontextmanager
    async def postgres(
        base: Path, bootstrap: str, server_settings: Any = None, **overrides: Any
    ) -> AsyncIterator[Any]:
        if server_settings is not None:
            done.append(("server settings", dict(server_settings)))
        done.append(("postgres started", bootstrap, overrides))
        try:
            yield "server", SimpleNamespace(name="settings", **overrides)
        finally:
            done.append("postgres stopped")

    def migration(name: str, fails: bool = False) -> Any:
        async def migrate(settings: Any) -> None:
            done.append((f"{name} migrated", vars(settings)))
            if fails:
                raise RuntimeError(f"{name} failed")

        return migrate

    monkeypatch.setattr(module, "tansu_broker", broker)
    monkeypatch.setattr(module, "embedded_postgres", postgres)
    monkeypatch.setitem(module.MIGRATIONS, "followup", migration("followup"))
    monkeypatch.setitem(module.MIGRATIONS, "eventstore", migration("eventstore"))
    monkeypatch.setitem(module.MIGRATIONS, "audit", migration("audit", fails=True))
    return done


async def test_it_migrates_in_the_order_asked_with_the_overrides_and_stops_all(
    steps: list[Any], tmp_path: Path
) -> None:
    async with module.probe_stack(
        tmp_path, broker=True, migrated=("followup", "eventstore"), overrides={"x": 1}
    ) as stack:
        assert stack.server == "server"
        assert stack.broker is not None
        steps.append("body")
    settings = {"name": "settings", "x": 1}
    assert steps == [
        ("broker started", tmp_path / "tansu.log"),
        ("postgres started", "127.0.0.1:1234", {"x": 1}),
        ("followup migrated", settings),
        ("eventstore migrated", settings),
        "body",
        "postgres stopped",
        "broker stopped",
    ]


async def test_without_a_broker_the_settings_name_one_nothing_connects_to(
    steps: list[Any], tmp_path: Path
) -> None:
    async with module.probe_stack(tmp_path) as stack:
        assert stack.broker is None
    assert steps == [("postgres started", UNUSED_BROKER, {}), "postgres stopped"]


async def test_a_failed_migration_still_stops_the_server_and_the_broker(
    steps: list[Any], tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="audit failed"):
        async with module.probe_stack(tmp_path, broker=True, migrated=("audit",)):
            pytest.fail("the block was not to run")
    assert steps[-2:] == ["postgres stopped", "broker stopped"]


async def test_an_unknown_migration_is_refused_before_anything_starts(
    steps: list[Any], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="intake"):
        async with module.probe_stack(tmp_path, broker=True, migrated=("intake",)):
            pytest.fail("the block was not to run")
    assert steps == []


def test_a_database_address_is_the_settings_own_or_one_on_the_server() -> None:
    server: Any = SimpleNamespace(url=lambda name: f"postgresql://pg/{name}")
    settings = SimpleNamespace(followup_database_url="postgresql://pg/t1_followup")
    stack = module.ProbeStack(server, settings, None)
    assert stack.dsn("followup") == "postgresql://pg/t1_followup"
    assert stack.dsn("elsewhere") == "postgresql://pg/elsewhere"
    assert stack.live_dsn.startswith("postgresql://pg/t1_followup?search_path=")


async def test_the_servers_own_settings_are_passed_to_its_start(
    steps: list[Any], tmp_path: Path
) -> None:
    preload = {"shared_preload_libraries": "pg_stat_statements"}
    async with module.probe_stack(tmp_path, server_settings=preload):
        pass
    assert steps[0] == ("server settings", preload)


class Settings(SimpleNamespace):
    def model_copy(self, update: dict[str, Any]) -> Settings:
        return Settings(**{**vars(self), **update})


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The databases ``ensure_database`` was asked to make (none made)."""
    made: list[str] = []

    async def ensure(url: str) -> None:
        made.append(url)

    monkeypatch.setattr(module, "ensure_database", ensure)
    return made


async def test_another_database_is_made_and_migrated_as_its_components_own(
    steps: list[Any], made: list[str]
) -> None:
    server: Any = SimpleNamespace(url=lambda name: f"postgresql://pg/{name}")
    own = "postgresql://pg/t1_intake"
    settings = Settings(intake_database_url=own, followup_database_url="postgresql://pg/t1_fu")
    stack = module.ProbeStack(server, settings, None)
    # a round's own database, migrated as intake's (the settings' own address left alone)
    assert await stack.database("round_1", migrated="eventstore") == "postgresql://pg/round_1"
    # a component's database migrated another way: its own address
    assert await stack.database("followup", "eventstore") == "postgresql://pg/t1_fu"
    # made only
    assert await stack.database("bare") == "postgresql://pg/bare"
    assert made == ["postgresql://pg/round_1", "postgresql://pg/t1_fu", "postgresql://pg/bare"]
    assert steps == [
        (
            "eventstore migrated",
            {**vars(settings), "intake_database_url": "postgresql://pg/round_1"},
        ),
        ("eventstore migrated", {**vars(settings), "intake_database_url": "postgresql://pg/t1_fu"}),
    ]
    assert settings.intake_database_url == own
    with pytest.raises(ValueError, match="intake"):
        await stack.database("round_2", migrated="intake")
    assert len(made) == 3


async def test_make_bench_makes_and_migrates_its_databases_as_the_probes_do(
    steps: list[Any], made: list[str]
) -> None:
    from bench.stack import BenchStack

    settings = Settings(audit_database_url="postgresql://pg/branchline_audit")
    stack = BenchStack(settings, "postgresql://pg/postgres", "token", {}, {})  # type: ignore[arg-type]
    # bench.run's relay and ledger databases: made, and migrated by the product's runner
    assert await stack.database("bench_relay_0", "eventstore") == "postgresql://pg/bench_relay_0"
    with pytest.raises(RuntimeError, match="audit failed"):  # (the stand-in's audit fails)
        await stack.database("bench_ledger_0", "audit")
    assert made == ["postgresql://pg/bench_relay_0", "postgresql://pg/bench_ledger_0"]
    assert steps[0] == (
        "eventstore migrated",
        {**vars(settings), "intake_database_url": "postgresql://pg/bench_relay_0"},
    )
    assert steps[1][1]["audit_database_url"] == "postgresql://pg/bench_ledger_0"
    with pytest.raises(ValueError, match="intake"):
        await stack.database("bench_x", migrated="intake")


async def test_a_server_that_cannot_start_is_stopped_and_its_error_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bench import scratch

    from branchline_shared.embedded.postgres import EmbeddedPostgresError

    done: list[str] = []

    class Server:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def start(self) -> None:
            # pg_ctl's wait ran out: the server may be up by now, nobody stops it but us
            done.append("started")
            raise EmbeddedPostgresError("PostgreSQL did not start:\nthe log's tail")

        def stop(self, mode: str = "fast") -> None:
            done.append(f"stopped {mode}")

    monkeypatch.setattr(scratch, "EmbeddedPostgres", Server)
    with pytest.raises(EmbeddedPostgresError, match="did not start"):
        async with module.probe_stack(tmp_path, migrated=("eventstore",)):
            pytest.fail("the block was not to run")
    assert done == ["started", "stopped immediate"]
